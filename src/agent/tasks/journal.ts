/**
 * Task records on disk: one append-only journal, `$VGRID_HOME/tasks/records.jsonl`. Each
 * change of a record appends its whole new version as one JSON line. At open the last line
 * of each id wins, a torn last line (the agent killed mid-append) is skipped, and the journal
 * is rewritten with one line per record (a temporary file, then a rename). It is rewritten
 * the same way once it holds COMPACT_FACTOR times more lines than there are records.
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

/** A stored record as JSON: `{ record: { id, … }, … }`. */
export type JournalEntry = Record<string, unknown>

export class RecordJournal {
  private fd = -1
  private lines = 0

  private constructor (private readonly file: string) {}

  /**
   * Reads what the journal (and any record file of an earlier version) holds, last version
   * of each id, in no particular order; then rewrites the journal compactly.
   */
  static open (dir: string): { journal: RecordJournal, entries: JournalEntry[] } {
    const file = path.join(dir, JOURNAL_NAME)
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
    const take = (line: string): void => {
      if (line === '') return
      lines++
      lastBad = undefined
      try {
        const v = JSON.parse(line, shared) as unknown
        const id = idOf(v)
        if (id === undefined) throw new Error('no id')
        byId.set(id, v as JournalEntry)
      } catch {
        bad++
        lastBad = line
      }
    }
    try {
      lastLineTorn = !forEachLine(file, take)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const torn = lastLineTorn && lastBad !== undefined
    if (torn) log.warn(tornLineReport(file, lastBad!, byId))
    // a torn last line is told above; more is worth a word of its own
    if (bad > (torn ? 1 : 0)) log.warn(`skipped ${bad - (torn ? 1 : 0)} unreadable line(s) of ${file}`)
    const entries = [...byId.values()]
    const journal = new RecordJournal(file)
    try {
      journal.rewrite(function * () { for (const e of entries) yield JSON.stringify(e) }())
      for (const name of legacy) fs.rmSync(path.join(dir, name), { force: true })
    } catch (err) {
      // a full disk must not keep the agent from starting: go on appending to the journal
      // as it is (after a newline, so a torn last line cannot swallow the next one)
      log.warn(`could not rewrite ${file}; appending to it as it is`, err)
      journal.fd = fs.openSync(file, 'a', 0o600)
      journal.lines = lines
      if (lastLineTorn) {
        try { writeAllSync(journal.fd, '\n') } catch {}
      }
    }
    return { journal, entries }
  }

  /**
   * Appends a record's new version (`line`: its JSON). When the journal holds COMPACT_FACTOR
   * times more lines than the `live` records, it is rewritten from `all()` (every record to
   * keep, the new version included) instead. Never throws: a failed write is logged, and the
   * record is written again with its next change or compaction.
   */
  append (id: string, line: string, live: number, all: () => Iterable<string>): void {
    try {
      if (this.fd < 0) throw new Error('the journal is closed')
      if (this.lines >= Math.max(COMPACT_MIN_LINES, COMPACT_FACTOR * live)) {
        this.rewrite(all())
        return
      }
      writeAllSync(this.fd, line + '\n')
      this.lines++
    } catch (err) {
      log.warn(`could not save task ${id}`, err)
    }
  }

  close (): void {
    if (this.fd < 0) return
    try { fs.closeSync(this.fd) } catch {}
    this.fd = -1
  }

  /**
   * Replaces the journal with these lines, atomically, and appends to the new one. `lines`
   * may be made one by one as they are written: only a batch is in memory at a time.
   */
  private rewrite (lines: Iterable<string>): void {
    const tmp = `${this.file}.tmp`
    const fd = fs.openSync(tmp, 'w', 0o600)
    let count = 0
    try {
      let batch: string[] = []
      let bytes = 0
      for (const line of lines) {
        batch.push(line)
        bytes += line.length + 1
        count++
        if (bytes >= REWRITE_BATCH_BYTES) {
          writeAllSync(fd, batch.join('\n') + '\n')
          batch = []
          bytes = 0
        }
      }
      if (batch.length > 0) writeAllSync(fd, batch.join('\n') + '\n')
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, this.file)
    this.close()
    this.fd = fs.openSync(this.file, 'a', 0o600)
    this.lines = count
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
 * Calls `onLine` for each line of `file`, read a MiB at a time (a journal may be larger than
 * the longest string V8 allows). False when the file does not end with a newline.
 */
function forEachLine (file: string, onLine: (line: string) => void): boolean {
  const fd = fs.openSync(file, 'r')
  try {
    const buf = Buffer.allocUnsafe(1024 * 1024)
    let rest: Buffer = Buffer.alloc(0)
    // inside a line past MAX_LINE_BYTES: dropped up to its newline
    let skipping = false
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null)
      if (n === 0) break
      let data = rest.length > 0 ? Buffer.concat([rest, buf.subarray(0, n)]) : buf.subarray(0, n)
      for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a)) {
        if (skipping) skipping = false
        else onLine(data.toString('utf8', 0, nl))
        data = data.subarray(nl + 1)
      }
      if (!skipping && data.length > MAX_LINE_BYTES) {
        onLine('\0')
        skipping = true
      }
      rest = skipping ? Buffer.alloc(0) : Buffer.from(data)
    }
    if (rest.length > 0) {
      onLine(rest.toString('utf8'))
      return false
    }
    return true
  } finally {
    fs.closeSync(fd)
  }
}

function writeAllSync (fd: number, text: string): void {
  const buf = Buffer.from(text)
  for (let off = 0; off < buf.byteLength;) off += fs.writeSync(fd, buf, off, buf.byteLength - off)
}
