/**
 * Task records on disk: one append-only journal, `$VGRID_HOME/tasks/records.jsonl`. Each
 * change of a record appends its whole new version as one JSON line. At open the last line
 * of each id wins, a torn last line (the agent killed mid-append) is skipped, and the journal
 * is rewritten with one line per record (a temporary file, then a rename). It is rewritten
 * the same way once it holds COMPACT_FACTOR times more lines than there are records.
 *
 * It knows where each record's last line starts, so a record can be read back by its id:
 * the task manager keeps only a small key of each ended task in memory (20,000 whole records
 * were ~40 MB of an owner's heap) and reads the rest from here when asked. A compaction
 * copies those lines a window at a time; no record is parsed or rebuilt for it.
 *
 * Why not a file per record, rewritten through a temporary and a rename: that cost 0.1–0.9 ms
 * of blocking file-system work per change (a new inode each time, and ext4 starts writing a
 * file renamed over another at once), about three changes per task, and it was the largest
 * cost of the owning agent on the 1,000-task benchmark. An append is one write of ~3 µs.
 *
 * Like the rest of the agent's state, nothing is fsynced: a killed agent loses nothing (the
 * kernel has the bytes), a power cut may lose the last changes.
 *
 * Records of earlier versions (`<id>.json`, one file each) are read once and folded in.
 */
import fs from 'node:fs'
import path from 'node:path'
import { createLogger } from '../../common/log.js'

const log = createLogger('tasks')
export const JOURNAL_NAME = 'records.jsonl'
/** Compact once the journal has this many lines per record kept... */
const COMPACT_FACTOR = 4
/** ...and at least this many lines. */
const COMPACT_MIN_LINES = 4096
/**
 * A compaction writes this much at a time: with the whole journal joined into one string
 * and one buffer first (17 MB for 20,000 records, three copies at the peak), each one left
 * the owner's heap and RSS tens of megabytes larger.
 */
const REWRITE_BATCH_BYTES = 1024 * 1024
/** A line longer than this is not a record (argv and env are capped far below it). */
const MAX_LINE_BYTES = 16 * 1024 * 1024
/** A record is read back this much at a time (most fit in one read). */
const READ_LINE_BYTES = 4096
/** readMany reads up to this many records one by one; more, in one pass over the file. */
const READ_ONE_BY_ONE = 64
const NEWLINE = Buffer.from('\n')

/** A stored record as JSON: `{ record: { id, … }, … }`. */
export type JournalEntry = Record<string, unknown>

/**
 * The journal, with where each record's last version starts in it: a record can be read
 * back by its id (an owner keeps the records of ended tasks here, not in memory), and a
 * compaction copies those lines, not records rebuilt in memory.
 */
export class RecordJournal {
  /** Appends and reads (`a+`: every write goes to the end, reads take a position). */
  private fd = -1
  private lines = 0
  /** Bytes in the file: where the next line starts. */
  private size = 0
  /** An append failed part way: the next one starts on a line of its own. */
  private torn = false
  /** Each record's id → where its last version's line starts. */
  private readonly spots = new Map<string, number>()

  private constructor (private readonly file: string) {}

  /**
   * Reads what the journal (and any record file of an earlier version) holds, last version
   * of each id, in no particular order; then rewrites the journal compactly.
   */
  static open (dir: string): { journal: RecordJournal, entries: JournalEntry[] } {
    const file = path.join(dir, JOURNAL_NAME)
    const journal = new RecordJournal(file)
    const byId = new Map<string, JournalEntry>()
    const legacy: string[] = []
    for (const name of fs.readdirSync(dir)) {
      if (!name.endsWith('.json')) continue
      legacy.push(name)
      try {
        const v = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as unknown
        const id = idOf(v)
        if (id !== undefined) byId.set(id, v as JournalEntry)
      } catch (err) {
        log.warn(`skipped the unreadable task record ${name}`, err)
      }
    }
    let bad = 0
    let lines = 0
    let lastLineTorn = false
    /** The last line, when it did not parse. */
    let lastBad: string | undefined
    const shared = sharedStrings()
    const take = (raw: Buffer, at: number): void => {
      if (raw.length === 0) return
      lines++
      lastBad = undefined
      const line = raw.toString('utf8')
      try {
        const v = JSON.parse(line, shared) as unknown
        const id = idOf(v)
        if (id === undefined) throw new Error('no id')
        byId.set(id, v as JournalEntry)
        journal.spots.set(id, at)
      } catch {
        bad++
        lastBad = line
      }
    }
    let size = 0
    try {
      const read = forEachLine(file, take)
      lastLineTorn = !read.whole
      size = read.size
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const torn = lastLineTorn && lastBad !== undefined
    if (torn) log.warn(tornLineReport(file, lastBad!, byId))
    // a torn last line is told above; more is worth a word of its own
    if (bad > (torn ? 1 : 0)) log.warn(`skipped ${bad - (torn ? 1 : 0)} unreadable line(s) of ${file}`)
    // records only in files of an earlier version: written after the journal's own lines
    const older = [...byId].filter(([id]) => !journal.spots.has(id)).map(([, e]) => JSON.stringify(e))
    try {
      journal.rewrite(older)
      for (const name of legacy) fs.rmSync(path.join(dir, name), { force: true })
    } catch (err) {
      // a full disk must not keep the agent from starting: go on appending to the journal
      // as it is (after a newline, so a torn last line cannot swallow the next one)
      log.warn(`could not rewrite ${file}; appending to it as it is`, err)
      journal.fd = fs.openSync(file, 'a+', 0o600)
      journal.lines = lines
      journal.size = size
      journal.torn = lastLineTorn
    }
    return { journal, entries: [...byId.values()] }
  }

  /** How many records it holds. */
  get records (): number {
    return this.spots.size
  }

  /**
   * Appends a record's new version (`line`: its JSON). When the journal then holds
   * COMPACT_FACTOR times more lines than records, it is rewritten with the last line of each.
   * Never throws: false when the line could not be written (logged); the record's previous
   * version stays the one read back.
   */
  append (id: string, line: string): boolean {
    let wrote = false
    try {
      if (this.fd < 0) throw new Error('the journal is closed')
      const buf = Buffer.from((this.torn ? '\n' : '') + line + '\n')
      this.torn = true
      writeAllSync(this.fd, buf)
      this.torn = false
      this.spots.set(id, this.size + buf.byteLength - Buffer.byteLength(line) - 1)
      this.size += buf.byteLength
      this.lines++
      wrote = true
      if (this.lines >= Math.max(COMPACT_MIN_LINES, COMPACT_FACTOR * this.spots.size)) {
        // tried again only after as many lines more: a full disk must not copy the file at every append
        this.lines = this.spots.size
        this.rewrite([])
      }
    } catch (err) {
      if (this.torn) this.size = sizeOf(this.fd, this.size)
      log.warn(wrote ? `could not compact ${this.file}` : `could not save task ${id}`, err)
    }
    return wrote
  }

  /** The last version of record `id`, read back from the file; undefined when it has none. */
  read (id: string): JournalEntry | undefined {
    const at = this.spots.get(id)
    if (at === undefined || this.fd < 0) return undefined
    try {
      const v = JSON.parse(readLineAt(this.fd, at)) as unknown
      return idOf(v) === id ? v as JournalEntry : undefined
    } catch (err) {
      log.warn(`could not read task ${id} back from ${this.file}`, err)
      return undefined
    }
  }

  /** The last version of each of `ids` that it holds, read in one pass over the file. */
  readMany (ids: Iterable<string>): JournalEntry[] {
    const want = new Set<number>()
    for (const id of ids) { const at = this.spots.get(id); if (at !== undefined) want.add(at) }
    if (want.size === 0) return []
    if (want.size <= READ_ONE_BY_ONE) return [...want].map((at) => this.lineAt(at)).filter((e) => e !== undefined)
    const out: JournalEntry[] = []
    forEachLine(this.file, (raw, at) => {
      if (!want.has(at)) return
      try { out.push(JSON.parse(raw.toString('utf8')) as JournalEntry) } catch {}
    })
    return out
  }

  private lineAt (at: number): JournalEntry | undefined {
    try { return JSON.parse(readLineAt(this.fd, at)) as JournalEntry } catch { return undefined }
  }

  /** Forgets record `id`: the next compaction leaves it out. */
  drop (id: string): void {
    this.spots.delete(id)
  }

  close (): void {
    if (this.fd < 0) return
    try { fs.closeSync(this.fd) } catch {}
    this.fd = -1
  }

  /**
   * Replaces the journal, atomically, with the last line of each record it holds, then
   * `extra` lines (records not yet in it), and appends to the new one. The lines are copied
   * a window at a time: the records are never all in memory.
   */
  private rewrite (extra: readonly string[]): void {
    const tmp = `${this.file}.tmp`
    const fd = fs.openSync(tmp, 'w', 0o600)
    const keep = new Map<number, string>()
    for (const [id, at] of this.spots) keep.set(at, id)
    const spots = new Map<string, number>()
    let size = 0
    try {
      let batch: Buffer[] = []
      let bytes = 0
      const put = (line: Buffer, id: string | undefined): void => {
        if (id !== undefined) spots.set(id, size)
        batch.push(line, NEWLINE)
        size += line.byteLength + 1
        bytes += line.byteLength + 1
        if (bytes >= REWRITE_BATCH_BYTES) {
          writeAllSync(fd, Buffer.concat(batch))
          batch = []
          bytes = 0
        }
      }
      if (keep.size > 0) forEachLine(this.file, (raw, at) => { const id = keep.get(at); if (id !== undefined) put(Buffer.from(raw), id) })
      for (const line of extra) put(Buffer.from(line), idOf(JSON.parse(line)))
      if (batch.length > 0) writeAllSync(fd, Buffer.concat(batch))
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, this.file)
    this.close()
    this.fd = fs.openSync(this.file, 'a+', 0o600)
    this.spots.clear()
    for (const [id, at] of spots) this.spots.set(id, at)
    this.lines = spots.size
    this.size = size
    this.torn = false
  }
}

/**
 * What a torn last line cost, for the owner: the agent stopped while appending a record's
 * new version, so that task is as its previous line left it (or, recorded only there, lost).
 */
function tornLineReport (file: string, line: string, byId: Map<string, JournalEntry>): string {
  const said = `the last line of ${file} was torn (the agent stopped while writing it): skipped its ${Buffer.byteLength(line)} bytes`
  // The record's id comes first in its JSON, so a torn line most often still names it.
  const id = /^\{"record":\{"id":"([0-9a-f]{16})"/.exec(line)?.[1]
  if (id === undefined) return said
  return byId.has(id) ? `${said}; task ${id} keeps the state of its previous line` : `${said}; task ${id} was recorded only there and is lost`
}

/** Strings longer than this are taken as they are: a path, an argv, not a peer id or a host. */
const MAX_SHARED_STRING_CHARS = 128

/**
 * A JSON.parse reviver that gives equal short strings one copy. Parsed, every record has its
 * own copy of its owner's and executor's peer ids, hosts, user, state and workspace: ~600
 * bytes a record, 12 MB for the 20,000 records an owner keeps, all held until they are
 * forgotten. The table lives as long as one open().
 */
function sharedStrings (): (key: string, value: unknown) => unknown {
  const seen = new Map<string, string>()
  return (_key, value) => {
    if (typeof value !== 'string' || value.length > MAX_SHARED_STRING_CHARS) return value
    const had = seen.get(value)
    if (had !== undefined) return had
    seen.set(value, value)
    return value
  }
}

function idOf (v: unknown): string | undefined {
  const id = (v as { record?: { id?: unknown } } | null)?.record?.id
  return typeof id === 'string' ? id : undefined
}

/**
 * Calls `onLine` for each line of `file` with where it starts, read a MiB at a time (a journal
 * may be larger than the longest string V8 allows). `raw` is valid only during the call.
 * `whole`: false when the file does not end with a newline.
 */
function forEachLine (file: string, onLine: (raw: Buffer, at: number) => void): { whole: boolean, size: number } {
  const fd = fs.openSync(file, 'r')
  try {
    const buf = Buffer.allocUnsafe(1024 * 1024)
    let rest: Buffer = Buffer.alloc(0)
    /** Where `rest` starts in the file. */
    let restAt = 0
    // inside a line past MAX_LINE_BYTES: dropped up to its newline
    let skipping = false
    let size = 0
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null)
      if (n === 0) break
      size += n
      let data = rest.length > 0 ? Buffer.concat([rest, buf.subarray(0, n)]) : buf.subarray(0, n)
      let at = restAt
      for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a)) {
        if (skipping) skipping = false
        else onLine(data.subarray(0, nl), at)
        at += nl + 1
        data = data.subarray(nl + 1)
      }
      if (!skipping && data.length > MAX_LINE_BYTES) {
        onLine(Buffer.from('\0'), at)
        skipping = true
      }
      rest = skipping ? Buffer.alloc(0) : Buffer.from(data)
      restAt = skipping ? size : at
    }
    if (rest.length > 0) {
      onLine(rest, restAt)
      return { whole: false, size }
    }
    return { whole: true, size }
  } finally {
    fs.closeSync(fd)
  }
}

/** The line that starts at `at` in the file open as `fd`, without its newline. */
function readLineAt (fd: number, at: number): string {
  const parts: Buffer[] = []
  let total = 0
  for (let pos = at; total <= MAX_LINE_BYTES;) {
    const buf = Buffer.allocUnsafe(READ_LINE_BYTES)
    const n = fs.readSync(fd, buf, 0, buf.length, pos)
    if (n === 0) break
    const nl = buf.subarray(0, n).indexOf(0x0a)
    if (nl >= 0) { parts.push(buf.subarray(0, nl)); break }
    parts.push(buf.subarray(0, n))
    total += n
    pos += n
  }
  return Buffer.concat(parts).toString('utf8')
}

function sizeOf (fd: number, otherwise: number): number {
  try { return fs.fstatSync(fd).size } catch { return otherwise }
}

function writeAllSync (fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.byteLength;) off += fs.writeSync(fd, buf, off, buf.byteLength - off)
}
