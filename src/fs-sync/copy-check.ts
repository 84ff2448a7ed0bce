/**
 * Before the executor reuses its copy of a workspace, it checks that the copy still holds the
 * tree it is recorded to hold. Anything may have written there since the last sync: a process
 * a command left running (`setsid sleep 600 && …`), another guest, a person. Trusting the
 * record would run the next command on those files, and the outputs scan after it would send
 * them to the submitter as if the command had made them.
 *
 * The check is rsync's quick check done against the record, without reading any file: one
 * readdir per directory and one lstat per file or link, compared by type, size, mtime and
 * exec bit, a link's target, and, where the copy's stat cache knows the file, its ctime and
 * inode (no write can keep those, so an edit that restores size and mtime is seen too).
 * Entries that appeared are found by the readdirs; those the scan of the copy would leave
 * out (the ignore rules) stay, as every sync has left them (a build's caches).
 *
 * The walk reads the directories first, then lstats the files it found (half of them in a
 * StatWorker thread when one is given: the stats are nearly all the check costs), then
 * compares. It never follows a link: a directory is entered only when lstat semantics say it is
 * one, and a `.vgridignore` is opened with O_NOFOLLOW. (A directory swapped for a link between
 * its lstat and its readdir can make the walk read the names of another: it only reads them,
 * and every write of the sync goes through safeResolve.) What differs is returned as paths;
 * `markChanged` turns them into a base that says "unknown" there, so the sync that follows
 * removes or rewrites them from the submitter's tree like any other change.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, type BigIntStats, type Dirent } from 'node:fs'
import { S_IFLNK, S_IFMT, S_IFREG, STAT_FIELDS, WORKER_MIN_FILES, type StatWorker } from './stat-workers.js'
import { IGNORE_FILE, IgnoreRules } from './ignore-rules.js'
import { nameProblem } from './paths.js'
import { floorMs, type StatCache } from './stat-cache.js'
import { hexOf, sameChunks } from './tree-codec.js'
import type { WatchedScan } from './scan-watch.js'
import type { DirNode, FileNode, LinkNode, Node } from './types.js'

/** lstat calls made without yielding to the event loop (as the scan does: ~1–2 ms). */
export const CHECK_STAT_BATCH = 256
/** Directories read without yielding to the event loop. */
const CHECK_DIR_BATCH = 64
/** A `.vgridignore` larger than this is not read here (the entries it covers count as changed). */
const MAX_IGNORE_FILE_BYTES = 1024 * 1024

export interface CopyCheckOptions {
  /** The copy's stat cache: files it knows are also compared by ctime and inode. */
  statCache?: StatCache
  /** A thread that lstats half of the files meanwhile. */
  statWorker?: StatWorker
  /**
   * Trust a file only as far as a stat-cache rescan would: one the cache does not know counts
   * as changed, and those it knows are marked seen in it (so that saving the cache keeps them).
   * For the check after a command, which stands for the outputs scan when it finds nothing.
   */
  strict?: boolean
  /** Built-in ignore patterns, as the copy's scans use them (default DEFAULT_IGNORES). */
  defaultIgnores?: readonly string[]
  /**
   * The copy's watch (scan-watch.ts), begun for this check, which ends it: the walk watches
   * every directory it reads. A check that is not strict takes the copy as unchanged, without
   * walking it, when nothing at all happened in it since a walk found it to hold `base`.
   */
  watch?: WatchedScan
  signal?: AbortSignal
}

export type CopyCheck =
  /** Relative paths ('/'-separated) whose entry differs from the record, appeared or vanished. */
  | { changed: string[] }
  /** The copy cannot be described against the record (why): check it from scratch. */
  | { unusable: string }

/**
 * A node no disk entry and no tree can equal (a link target never holds a NUL): in a base it
 * makes the diff remove or rewrite the path whatever the next tree holds there.
 */
const UNKNOWN: LinkNode = Object.freeze({ kind: 'link', target: '\0changed in the copy' }) as LinkNode


/** What the check compares of a stat: STAT_FIELDS numbers at `o` of a packed array. */
interface Packed { stats: BigInt64Array, o: number }

export async function checkCopy (dir: string, base: DirNode, opts: CopyCheckOptions = {}): Promise<CopyCheck> {
  const { watch } = opts
  // (a tree's root hash, set by its decoding or its encoding)
  const tag = base.hash.length > 0 ? hexOf(base.hash) : undefined
  if (watch === undefined) return await check(dir, base, opts)
  // The check after a command never skips: a write through mmap() raises no event.
  if (opts.strict !== true && tag !== undefined && watch.quietTag === tag) {
    watch.unread()
    return { changed: [] }
  }
  let got: CopyCheck | undefined
  try {
    got = await check(dir, base, opts)
    return got
  } finally {
    watch.finish(got !== undefined && 'changed' in got && got.changed.length === 0, tag)
  }
}

async function check (dir: string, base: DirNode, opts: CopyCheckOptions): Promise<CopyCheck> {
  const root = lstatSync(dir, { throwIfNoEntry: false })
  if (root === undefined || !root.isDirectory()) return { unusable: 'the copy is not a directory' }
  const walk = new Walk(opts)
  try {
    await walk.dir(dir, '', base, IgnoreRules.root(undefined, opts.defaultIgnores))
  } catch (err) {
    if (err instanceof Unusable) return { unusable: err.message }
    throw err
  }
  const { leaves } = walk
  const stats = await lstatAll(leaves.map((l) => l.abs), opts)
  for (let i = 0; i < leaves.length; i++) {
    const l = leaves[i]!
    if (!matches(l.abs, l.rel, { stats, o: i * STAT_FIELDS }, l.want, opts)) walk.changed.push(l.rel)
  }
  return { changed: walk.changed }
}

/** `base` with every path of `changed` made UNKNOWN; `base` itself is not modified. */
export function markChanged (base: DirNode, changed: readonly string[]): DirNode {
  const copy = (d: DirNode): DirNode => ({ kind: 'dir', hash: new Uint8Array(0), entries: new Map(d.entries) })
  const root = copy(base)
  // Directories copied so far: each lies at one path, unlike the originals (decodeTree shares
  // equal subtrees between paths), and has no hash, so the diff looks inside it.
  const copies = new Set<DirNode>([root])
  for (const rel of changed) {
    const parts = rel.split('/')
    let at: DirNode | undefined = root
    for (let i = 0; i < parts.length - 1 && at !== undefined; i++) {
      const child: Node | undefined = at.entries.get(parts[i]!)
      if (child?.kind !== 'dir') { at = undefined; break }
      let mine: DirNode = child
      if (!copies.has(mine)) {
        mine = copy(child)
        copies.add(mine)
        at.entries.set(parts[i]!, mine)
      }
      at = mine
    }
    // Under a path already unknown: the whole of it goes anyway.
    if (at !== undefined) at.entries.set(parts[parts.length - 1]!, UNKNOWN)
  }
  return root
}

class Unusable extends Error {}

/** A file or link of the record that the disk has an entry for: compared once stat'ed. */
interface Leaf { abs: string, rel: string, want: FileNode | LinkNode }

class Walk {
  readonly changed: string[] = []
  readonly leaves: Leaf[] = []
  private dirs = 0

  constructor (private readonly opts: CopyCheckOptions) {}

  async dir (abs: string, rel: string, node: DirNode, rules: IgnoreRules): Promise<void> {
    this.opts.signal?.throwIfAborted()
    if (++this.dirs % CHECK_DIR_BATCH === 0) await new Promise((resolve) => setImmediate(resolve))
    const { watch } = this.opts
    if (watch?.quiet(rel) === true) {
      await this.quietDir(abs, rel, node, rules, watch)
      return
    }
    // watched before it is read: whatever happens in it after the readdir is seen
    watch?.enter(abs, rel)
    let dirents: Dirent[]
    try {
      dirents = readdirSync(abs, { withFileTypes: true })
    } catch (err) {
      if (rel === '') throw new Unusable(`the copy could not be read: ${(err as Error).message}`)
      this.changed.push(rel)
      return
    }
    this.opts.watch?.record(rel)
    const prefix = abs + '/'
    const ignoreFile = node.entries.get(IGNORE_FILE)
    if (ignoreFile?.kind === 'file' && dirents.some((d) => d.name === IGNORE_FILE)) {
      // Only the recorded file's rules: a changed one is rewritten, and what it would have
      // kept is then not in the record, so it goes too (the safe side).
      const content = readIgnoreFile(prefix + IGNORE_FILE, join(rel, IGNORE_FILE), ignoreFile, this.opts)
      if (content !== undefined) rules = rules.withFile(rel, content)
    }
    let seen = 0
    for (const d of dirents) {
      const relPath = join(rel, d.name)
      const want = node.entries.get(d.name)
      if (want === undefined) {
        const isDir = d.isDirectory() || (!known(d) && isDirectory(prefix + d.name))
        if (rules.ignores(relPath, isDir)) continue
        // The outputs scan refuses such a name, so no tree can say "remove it": start afresh.
        if (nameProblem(d.name) !== undefined) throw new Unusable(`an entry of the copy has a name no tree can hold: ${JSON.stringify(relPath)}`)
        this.changed.push(relPath)
        continue
      }
      seen++
      if (want.kind === 'dir') {
        if (known(d) ? d.isDirectory() : isDirectory(prefix + d.name)) await this.dir(prefix + d.name, relPath, want, rules)
        else this.changed.push(relPath)
        continue
      }
      this.leaves.push({ abs: prefix + d.name, rel: relPath, want })
    }
    if (seen < node.entries.size) {
      const present = new Set(dirents.map((d) => d.name))
      for (const name of node.entries.keys()) if (!present.has(name)) this.changed.push(join(rel, name))
    }
  }

  /**
   * A directory where nothing happened since a check found it whole (scan-watch.ts): its
   * entries are the record's, unread. The check after a command still stats its files, as a
   * write through mmap() raises no event; the check before a sync takes them as they were.
   */
  private async quietDir (abs: string, rel: string, node: DirNode, rules: IgnoreRules, watch: WatchedScan): Promise<void> {
    watch.enter(abs, rel)
    watch.record(rel)
    const prefix = abs + '/'
    const ignoreFile = node.entries.get(IGNORE_FILE)
    if (ignoreFile?.kind === 'file') {
      const content = readIgnoreFile(prefix + IGNORE_FILE, join(rel, IGNORE_FILE), ignoreFile, this.opts)
      if (content !== undefined) rules = rules.withFile(rel, content)
    }
    for (const [name, want] of node.entries) {
      if (want.kind === 'dir') await this.dir(prefix + name, join(rel, name), want, rules)
      else if (this.opts.strict === true) this.leaves.push({ abs: prefix + name, rel: join(rel, name), want })
    }
  }
}

/** The stats of `paths`, packed; the second half in the worker when it is there and worth it. */
async function lstatAll (paths: string[], opts: CopyCheckOptions): Promise<BigInt64Array> {
  const out = new BigInt64Array(paths.length * STAT_FIELDS)
  let mine = paths.length
  let far: Promise<BigInt64Array | undefined> | undefined
  if (opts.statWorker?.available === true && paths.length >= WORKER_MIN_FILES) {
    mine = Math.ceil(paths.length / 2)
    far = opts.statWorker.lstat(paths.slice(mine)).catch(() => undefined)
  }
  await lstatRange(paths, 0, mine, out, opts.signal)
  if (far !== undefined) {
    const got = await far
    if (got !== undefined) out.set(got, mine * STAT_FIELDS)
    else await lstatRange(paths, mine, paths.length, out, opts.signal)
  }
  return out
}

async function lstatRange (paths: string[], from: number, to: number, out: BigInt64Array, signal?: AbortSignal): Promise<void> {
  for (let i = from; i < to; i++) {
    if ((i - from + 1) % CHECK_STAT_BATCH === 0) {
      await new Promise((resolve) => setImmediate(resolve))
      signal?.throwIfAborted()
    }
    const st = lstatSync(paths[i]!, { bigint: true, throwIfNoEntry: false })
    pack(st, out, i * STAT_FIELDS)
  }
}

function pack (st: BigIntStats | undefined, out: BigInt64Array, o: number): void {
  if (st === undefined) { out[o] = -1n; return }
  out[o] = st.mode
  out[o + 1] = st.size
  out[o + 2] = st.mtimeNs
  out[o + 3] = st.ctimeNs
  out[o + 4] = BigInt.asIntN(64, st.ino)
  out[o + 5] = st.nlink
}

function matches (abs: string, relPath: string, { stats, o }: Packed, want: FileNode | LinkNode, { statCache: cache, strict }: CopyCheckOptions): boolean {
  const mode = stats[o]!
  if (mode < 0n) return false
  if (want.kind === 'link') {
    if ((mode & S_IFMT) !== S_IFLNK) return false
    try { return readlinkSync(abs) === want.target } catch { return false }
  }
  const size = stats[o + 1]!
  const mtimeNs = stats[o + 2]!
  if ((mode & S_IFMT) !== S_IFREG || size !== BigInt(want.size) || floorMs(mtimeNs) !== want.mtimeMs || ((mode & 0o100n) !== 0n) !== want.exec) return false
  // Size and mtime (to the millisecond) as recorded, yet rewritten or touched since: the stat
  // the copy's last scan saw tells, ctime and inode above all (touch -r, cp -p keep the rest).
  // The outputs scan after each command leaves the cache exact, or without the file.
  const key = { size, mtimeNs, ctimeNs: stats[o + 3]!, ino: BigInt.asUintN(64, stats[o + 4]!) }
  // Strict: what the rescan would trust, and would find to hold the recorded chunks.
  if (strict === true) {
    const cached = cache?.lookup(relPath, key)
    return cached !== undefined && sameChunks(cached, want.chunks)
  }
  const k = cache?.peek(relPath)
  return k === undefined || (k.size === key.size && k.mtimeNs === key.mtimeNs && k.ctimeNs === key.ctimeNs && k.ino === key.ino)
}

function isDirectory (abs: string): boolean {
  return lstatSync(abs, { throwIfNoEntry: false })?.isDirectory() === true
}

/** The recorded `.vgridignore`, read without following a link, when it still is what the record says. */
function readIgnoreFile (abs: string, relPath: string, want: FileNode, opts: CopyCheckOptions): string | undefined {
  const { size } = want
  if (size > MAX_IGNORE_FILE_BYTES) return undefined
  let fd: number
  try {
    fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch {
    return undefined
  }
  try {
    const stats = new BigInt64Array(STAT_FIELDS)
    pack(fstatSync(fd, { bigint: true }), stats, 0)
    if (!matches(abs, relPath, { stats, o: 0 }, want, opts)) return undefined
    const buf = Buffer.allocUnsafe(size)
    let got = 0
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got)
      if (n === 0) return undefined
      got += n
    }
    return buf.toString('utf8')
  } catch {
    return undefined
  } finally {
    closeSync(fd)
  }
}

function known (d: Dirent): boolean {
  return d.isFile() || d.isDirectory() || d.isSymbolicLink() || d.isFIFO() || d.isSocket() || d.isCharacterDevice() || d.isBlockDevice()
}

function join (rel: string, name: string): string {
  return rel === '' ? name : `${rel}/${name}`
}
