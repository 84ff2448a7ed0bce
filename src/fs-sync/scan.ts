/**
 * The submitter's side of a sync: walk the workspace into a tree of FileNode / LinkNode /
 * DirNode, cut and hash the files that changed since the stat cache last saw them, and encode
 * the tree (which sets every directory's hash). An unchanged workspace costs one readdir per
 * directory and one lstat per file: no file is opened.
 *
 * What is not synced: paths the ignore rules exclude, sockets, fifos and devices (one warning
 * each), names another system could not write (a warning each), and files that vanish or
 * cannot be read during the scan (a warning each). Symlinks are kept as links, whatever they
 * point at; they are never followed. Past a limit of the tree format the scan fails
 * (ERR_WORKSPACE_TOO_LARGE) rather than sync part of the workspace.
 */
import fsp from 'node:fs/promises'
import path from 'node:path'
import { lstatSync, readdirSync, statSync, type Dirent } from 'node:fs'
import { VgridError } from '../common/errors.js'
import { createLogger } from '../common/log.js'
import { linkedSignal, type LinkedSignal } from '../common/abort.js'
import { chunkFile, chunkFileSync } from './fastcdc.js'
import { HashQueue, fileChunks, type ChunkFn } from './scan-hash.js'
import { WORKER_MIN_FILE_BYTES, WorkerPool, defaultScanWorkers } from './scan-workers.js'
import { IGNORE_FILE, IgnoreRules } from './ignore-rules.js'
import { compareNames, nameProblem, parentRel } from './paths.js'
import { RACY_MARGIN_MS, floorMs, settledBefore, type StatCache } from './stat-cache.js'
import { encodeTree, type EncodeMemo } from './tree-codec.js'
import { PackedStat, STAT_FIELDS, WORKER_MIN_FILES, type ScanStat, type StatWorker } from './stat-workers.js'
import { checkTreeLimits, treeStats } from './tree-stats.js'
import type { DirRecord, KeptFile, WatchedScan } from './scan-watch.js'
import {
  MAX_ENTRIES_PER_DIR, MAX_FILE_BYTES, MAX_LINK_TARGET_BYTES, MAX_TREE_DEPTH, MAX_TREE_FILES,
  type ChunkSource, type DirNode, type FileNode, type FileStatKey, type Hash, type LinkNode, type Node, type TreeStats
} from './types.js'

const log = createLogger('sync')

/** Files cut and hashed at once: overlaps reading one with hashing another, memory stays small. */
export const HASH_CONCURRENCY = 4
/** Files found but not yet hashed before the walk waits (half for the workers, half here): bounds memory on huge trees. */
export const MAX_QUEUED_FILES = 512
/** lstat calls made without yielding to the event loop (~1–2 ms). */
export const STAT_BATCH = 256
/** Files and links the walk finds before it stops to stat them (Scanner.settle). */
export const STAT_AHEAD = 4096
/** With a StatWorker, the part of the stats taken on the scan's own thread. */
const MAIN_THREAD_SHARE = 1 / 3
export const PROGRESS_INTERVAL_MS = 100
/** MAX_FILE_BYTES as a bigint, for comparing with a stat (made once, not per file). */
const MAX_FILE_BIGINT = BigInt(MAX_FILE_BYTES)

export type { ChunkFn } from './scan-hash.js'

export interface ScanProgress {
  files: number
  dirs: number
  /** Bytes of the files found so far. */
  bytes: number
  /** Files and bytes read and hashed (not found in the stat cache). */
  hashedFiles: number
  hashedBytes: number
  done: boolean
}

export interface ScanOptions {
  statCache?: StatCache
  signal?: AbortSignal
  onProgress?: (p: ScanProgress) => void
  /** One line per path skipped; default: the `sync` logger's warn. */
  onWarning?: (msg: string) => void
  /** Default: FastCDC 2020 with SHA-256 (fastcdc.ts). Tests count calls through it. */
  chunkFile?: ChunkFn
  /**
   * Worker threads for files of WORKER_MIN_FILE_BYTES and more (default: one per core, at
   * most MAX_SCAN_WORKERS; none when running from sources or with `chunkFile`).
   */
  workers?: number
  /**
   * Those threads, the caller's: kept between scans (starting two cost 50–120 ms of a scan
   * that hashes a big file), never closed by the scan. Overrides `workers`.
   */
  pool?: WorkerPool
  /** Files hashed at once, besides those in workers (default HASH_CONCURRENCY). */
  concurrency?: number
  /** Built-in ignore patterns (default DEFAULT_IGNORES). */
  defaultIgnores?: readonly string[]
  /**
   * Relative paths ('/'-separated) left out with all they hold, whatever the ignore files
   * say: the agent's own home when the workspace holds it (its keys must never travel).
   */
  exclude?: readonly string[]
  /**
   * What to record for a path that is there but cannot be synced (unreadable, a fifo…),
   * besides the warning. The executor's rescan of its copy answers with what the copy held
   * before the command: the submitter then sees it unchanged and keeps its own, where
   * leaving it out would read as "the command deleted it".
   */
  keep?: (rel: string) => Node | undefined
  /** The last scan's directory records from the same root: unchanged ones are reused. */
  memo?: EncodeMemo
  /**
   * A thread that lstats two thirds of the files meanwhile, in batches of STAT_AHEAD (the
   * caller's: never closed by the scan).
   */
  statWorker?: StatWorker
  /**
   * The workspace's watch (scan-watch.ts): directories where nothing happened since the last
   * scan are taken from it unread.
   */
  watch?: WatchedScan
}

/** A file, link or other non-directory the walk found: recorded once stat'ed (Scanner.settle). */
interface Found {
  abs: string
  rel: string
  name: string
  parent: DirNode
  rules: IgnoreRules
  depth: number
  /** Taken by the walk already when the directory did not say what the entry is. */
  st: ScanStat | Error | undefined
}

/** What holds a found entry's place in its directory until it is stat'ed. */
const PENDING: LinkNode = Object.freeze({ kind: 'link', target: '\0not yet stat\'ed' }) as LinkNode

export interface Scan {
  tree: DirNode
  stats: TreeStats
  /** Where each distinct chunk can be read here, by hex hash (one file that holds it). */
  /** Where each distinct chunk can be read here, by hex hash; built on first use. */
  readonly sources: Map<string, ChunkSource>
  rootHash: Hash
  /** Directory records and chunk lists, by hex hash (from encodeTree). */
  blobs: Map<string, Uint8Array>
  /** When the scan started (ms since the epoch): mtimes close to it are "racy" (local-state.ts). */
  startedMs: number
  /** Files the scan had to read (the stat cache did not vouch for them), and their bytes. */
  read: { files: number, bytes: number }
}

/** Up to this size a file is read in one blocking call: a promise per small file costs more than its read. */
export const SYNC_READ_MAX_BYTES = 256 * 1024

const defaultChunkFn: ChunkFn = async (p, size, signal) => size <= SYNC_READ_MAX_BYTES
  ? chunkFileSync(p)
  : await chunkFile(p, undefined, signal !== undefined ? { signal } : {})

export async function scanWorkspace (root: string, opts: ScanOptions = {}): Promise<Scan> {
  const startedMs = Date.now()
  const absRoot = path.resolve(root)
  const st = statSync(absRoot, { throwIfNoEntry: false })
  if (st === undefined || !st.isDirectory()) throw new VgridError('ERR_BAD_ARGUMENT', `the workspace ${absRoot} is not a directory`)
  opts.statCache?.beginScan()
  const s = new Scanner(absRoot, opts, startedMs)
  const tree = await s.run()
  const sub = treeStats(tree, opts.memo?.stats)
  checkTreeLimits(sub, 'ERR_WORKSPACE_TOO_LARGE')
  const { rootHash, blobs } = encodeTree(tree, opts.memo)
  const { height: _, ...stats } = sub
  let sources: Map<string, ChunkSource> | undefined
  return {
    tree, stats, rootHash, blobs, startedMs,
    read: s.read(),
    // Built when first asked: an unchanged workspace never serves a chunk.
    get sources () { return (sources ??= s.sources()) }
  }
}

class Scanner {
  /** Every file kept, with its absolute path (where its chunks can be read) and its stat when trusted. */
  private readonly files: KeptFile[] = []
  /** With a watch: each directory's record, by its node, to which its files are added as they are kept. */
  private readonly recs: Map<DirNode, DirRecord> | undefined
  /** Files changed since this instant may change again unseen within one timestamp tick. */
  private readonly trustBeforeNs: bigint
  private readonly progress: ScanProgress = { files: 0, dirs: 0, bytes: 0, hashedFiles: 0, hashedBytes: 0, done: false }
  private lastProgress = 0
  private entries = 0
  /** Found by the walk, not yet stat'ed. */
  private found: Found[] = []
  private readonly warn: (msg: string) => void
  /** Files hashed on this thread (small ones, or all without workers). */
  private readonly queue: HashQueue
  /**
   * Files for the workers, queued apart: behind 100 big files in one queue, 10,000 small ones
   * waited for the workers to finish before this thread hashed any (0.7 s of a 1 GiB first
   * sync on 2 cores, every core but this one busy).
   */
  private readonly bigQueue: HashQueue
  /** Aborts the reads still running when the scan fails or is aborted. */
  private readonly stop = new AbortController()
  private readonly signal: AbortSignal
  private readonly linked: LinkedSignal
  private readonly pool: WorkerPool | undefined
  /** The pool is this scan's (ends with it), not the caller's. */
  private readonly ownPool: boolean
  private readonly chunk: ChunkFn
  private readonly excluded: ReadonlySet<string>

  /** Files read so far (the stat cache did not vouch for them), and their bytes. */
  read (): { files: number, bytes: number } {
    return { files: this.progress.hashedFiles, bytes: this.progress.hashedBytes }
  }

  constructor (private readonly root: string, private readonly opts: ScanOptions, startedMs: number) {
    this.excluded = new Set(opts.exclude ?? [])
    if (opts.watch !== undefined) this.recs = new Map()
    this.trustBeforeNs = BigInt(startedMs - RACY_MARGIN_MS) * 1_000_000n
    this.warn = opts.onWarning ?? ((msg) => log.warn(msg))
    // the caller's signal may be the agent's shutdown: linked only while the scan runs (common/abort.ts)
    this.linked = linkedSignal([opts.signal, this.stop.signal])
    this.signal = this.linked.signal
    const workers = opts.chunkFile !== undefined ? 0 : (opts.pool?.size ?? opts.workers ?? defaultScanWorkers())
    this.ownPool = opts.chunkFile === undefined && opts.pool === undefined
    this.pool = opts.chunkFile !== undefined ? undefined : (opts.pool ?? (workers > 0 ? new WorkerPool(workers) : undefined))
    // Enough files in flight to keep every worker busy, and the main thread on small ones meanwhile.
    this.queue = new HashQueue(opts.concurrency ?? HASH_CONCURRENCY, this.signal)
    this.bigQueue = new HashQueue(Math.max(1, 2 * workers), this.signal)
    this.chunk = opts.chunkFile ?? (async (p, size, signal) => this.forWorkers(size)
      ? await this.pool!.chunk(p, size, this.signal)
      : await defaultChunkFn(p, size, signal))
  }

  /** Whether a file of `size` bytes is cut and hashed in a worker thread (none without a pool: a caller's chunkFile). */
  private forWorkers (size: number): boolean {
    return this.pool !== undefined && size >= WORKER_MIN_FILE_BYTES
  }

  async run (): Promise<DirNode> {
    // a pool of the caller's cancels this scan's jobs itself (the signal)
    const onAbort = (): void => { if (this.ownPool) void this.pool?.close() }
    this.signal.addEventListener('abort', onAbort, { once: true })
    try {
      const tree = await this.dir(this.root, '', IgnoreRules.root(undefined, this.opts.defaultIgnores), 0)
      // (a settle can find more: an entry that turned into a directory is walked then)
      while (this.found.length > 0) await this.settle()
      await Promise.all([this.queue.drain(), this.bigQueue.drain()])
      this.opts.watch?.finish(true)
      this.progress.done = true
      this.opts.onProgress?.({ ...this.progress })
      // the root is never skipped: its readdir failing throws
      return tree as DirNode
    } catch (err) {
      this.opts.watch?.finish(false)
      this.queue.stop()
      this.bigQueue.stop()
      this.stop.abort()
      throw err
    } finally {
      this.signal.removeEventListener('abort', onAbort)
      this.linked.dispose()
      if (this.ownPool) await this.pool?.close()
    }
  }

  private async dir (abs: string, rel: string, rules: IgnoreRules, depth: number): Promise<Node | undefined> {
    this.signal.throwIfAborted()
    const watch = this.opts.watch
    const rec = watch?.clean(rel)
    if (rec !== undefined) return await this.reuse(abs, rel, rec, depth)
    // watched before it is read: whatever happens in it after the readdir is seen
    watch?.enter(abs, rel)
    let dirents: Dirent[]
    try {
      // Blocking: one directory is quick, and a thread-pool round trip per directory is not.
      dirents = readdirSync(abs, { withFileTypes: true })
    } catch (err) {
      // The system's own message would name the full path, thousands of bytes of it.
      if ((err as NodeJS.ErrnoException).code === 'ENAMETOOLONG') throw tooLarge(`a path in the workspace is longer than this system allows (${Buffer.byteLength(abs)} bytes): ${showStart(rel)}`)
      if (rel === '' || !isSkippable(err)) throw err
      return this.skip(rel, (err as Error).message)
    }
    const node: DirNode = { kind: 'dir', hash: new Uint8Array(0), entries: new Map() }
    this.progress.dirs++
    if (dirents.some((d) => d.name === IGNORE_FILE && d.isFile())) {
      try {
        rules = rules.withFile(rel, await fsp.readFile(path.join(abs, IGNORE_FILE), 'utf8'))
      } catch (err) {
        if (!isSkippable(err)) throw err
        this.warnIn(rel, `${show(join(rel, IGNORE_FILE))} could not be read: ${(err as Error).message}`)
      }
    }
    dirents.sort((a, b) => compareNames(a.name, b.name))
    const kept: Dirent[] = []
    for (const d of dirents) {
      const relPath = join(rel, d.name)
      if (this.excluded.has(relPath)) continue
      // A type the file system did not report (DT_UNKNOWN) is judged after its lstat.
      if (knownType(d) && rules.ignores(relPath, d.isDirectory())) continue
      const problem = nameProblem(d.name)
      if (problem !== undefined) {
        this.warnIn(rel, `skipped ${show(relPath)}: its name ${problem}`)
        continue
      }
      kept.push(d)
    }
    if (kept.length > MAX_ENTRIES_PER_DIR) {
      throw tooLarge(`the directory ${show(rel || '.')} has ${kept.length} entries, past the limit of ${MAX_ENTRIES_PER_DIR}`)
    }
    if (kept.length > 0 && depth + 1 > MAX_TREE_DEPTH) {
      throw tooLarge(`${showStart(rel)} is nested deeper than ${MAX_TREE_DEPTH} levels`)
    }
    this.entries += kept.length
    if (this.entries > MAX_TREE_FILES) throw tooLarge(`the workspace has more than ${MAX_TREE_FILES} entries`)
    if (watch !== undefined) {
      const r: DirRecord = { node, rules, files: [] }
      this.recs!.set(node, r)
      watch.record(rel, r)
    }

    const prefix = abs.endsWith('/') ? abs : abs + '/'
    for (const d of kept) {
      const name = d.name
      const relPath = join(rel, name)
      const absPath = prefix + name
      // Directories need no stat: the walk goes into them at once.
      if (d.isDirectory()) {
        const sub = await this.dir(absPath, relPath, rules, depth + 1)
        if (sub !== undefined) node.entries.set(name, sub)
        continue
      }
      let st: ScanStat | Error | undefined
      if (!knownType(d)) {
        // The file system did not say what it is (DT_UNKNOWN): its lstat does, now.
        st = lstatBig(absPath)
        if (!(st instanceof Error) && st.isDirectory()) {
          if (rules.ignores(relPath, true)) continue
          const sub = await this.dir(absPath, relPath, rules, depth + 1)
          if (sub !== undefined) node.entries.set(name, sub)
          continue
        }
        if (!(st instanceof Error) && rules.ignores(relPath, false)) continue
      }
      // Its place is kept in the directory until its stat is taken (settle).
      node.entries.set(name, PENDING)
      this.found.push({ abs: absPath, rel: relPath, name, parent: node, rules, depth, st })
      if (this.found.length >= STAT_AHEAD) await this.settle()
    }
    // Without a thread to share them, a directory's stats are taken as it is read: thousands
    // of stats held for a batch outlive the young generation (a scan of 10,000 unchanged
    // files took 111 → 133 ms when they waited for 4,096).
    if (this.opts.statWorker === undefined) await this.settle()
    else this.report()
    return node
  }

  /** A directory where nothing happened since the last scan: its entries as that scan found them. */
  private async reuse (abs: string, rel: string, rec: DirRecord, depth: number): Promise<DirNode> {
    this.progress.dirs++
    this.entries += rec.node.entries.size
    if (this.entries > MAX_TREE_FILES) throw tooLarge(`the workspace has more than ${MAX_TREE_FILES} entries`)
    const prefix = abs.endsWith('/') ? abs : abs + '/'
    let subs: Map<string, Node | undefined> | undefined
    let same = true
    for (const [name, child] of rec.node.entries) {
      if (child.kind !== 'dir') continue
      const sub = await this.dir(prefix + name, join(rel, name), rec.rules, depth + 1)
      ;(subs ??= new Map()).set(name, sub)
      if (sub !== child) same = false
    }
    // Where nothing happened below either, the very object of the last scan (no scan changes
    // a directory once it has ended): its record and totals are then reused as they are.
    let node = rec.node
    if (!same) {
      node = { kind: 'dir', hash: new Uint8Array(0), entries: new Map() }
      for (const [name, child] of rec.node.entries) {
        const sub = child.kind === 'dir' ? subs!.get(name) : child
        if (sub !== undefined) node.entries.set(name, sub)
      }
    }
    const next: DirRecord = { node, rules: rec.rules, files: rec.files }
    this.recs!.set(node, next)
    this.opts.watch!.record(rel, next)
    for (const f of rec.files) {
      this.files.push(f)
      this.opts.statCache?.keep(f.rel)
      this.progress.files++
      this.progress.bytes += f.file.size
    }
    this.report()
    return node
  }

  /**
   * Takes the stats of the entries found so far and records them: from the stat cache, or
   * queued to be hashed. With a StatWorker and enough of them, two thirds are stat'ed on its
   * thread meanwhile: one lstat per file is most of what an unchanged workspace costs.
   */
  private async settle (): Promise<void> {
    const found = this.found
    this.found = []
    const worker = this.opts.statWorker
    // found[0, mine) are stat'ed here, the rest on the thread
    let mine = found.length
    let far: Promise<BigInt64Array | undefined> | undefined
    if (worker?.available === true && found.length >= WORKER_MIN_FILES) {
      // The thread takes the last two thirds: this one also records every entry, and records
      // its own third while the thread still stats.
      mine = Math.ceil(found.length * MAIN_THREAD_SHARE)
      far = worker.lstat(found.slice(mine).map((f) => f.abs)).catch(() => undefined)
    }
    for (let i = 0, n = 0; i < mine; i++) {
      const f = found[i]!
      if (f.st !== undefined) continue
      if (++n % STAT_BATCH === 0) {
        await new Promise((resolve) => setImmediate(resolve))
        this.signal.throwIfAborted()
      }
      f.st = lstatBig(f.abs)
    }
    for (let i = 0; i < found.length; i++) {
      if (i === mine && far !== undefined) {
        fromThread(found.slice(mine), await far)
        this.signal.throwIfAborted()
      }
      const f = found[i]!
      const { name, parent } = f
      const st = f.st!
      if (st instanceof Error) {
        // A name that is not UTF-8 reaches us with U+FFFD in it, and no such file exists.
        const why = (st as NodeJS.ErrnoException).code === 'ENOENT' && name.includes('\uFFFD') ? 'its name is not valid UTF-8' : st.message
        const kept = this.skip(f.rel, why)
        if (kept !== undefined) parent.entries.set(name, kept)
        else parent.entries.delete(name)
        continue
      }
      if (st.isDirectory()) {
        // It was something else when the directory was read.
        parent.entries.delete(name)
        const sub = await this.dir(f.abs, f.rel, f.rules, f.depth + 1)
        if (sub !== undefined) parent.entries.set(name, sub)
        continue
      }
      const leaf = this.cachedFile(f.abs, f.rel, st, parent) ?? await this.leaf(f.abs, f.rel, st, parent)
      if (leaf !== undefined) parent.entries.set(name, leaf)
      else parent.entries.delete(name)
    }
    this.report()
  }

  /**
   * A warning about an entry of directory `dirRel`, which a watched scan then reads again
   * next time, so that the warning comes again.
   */
  private warnIn (dirRel: string, msg: string): void {
    this.warn(msg)
    this.opts.watch?.noisy(dirRel)
  }

  /** Warns that `relPath` is left out; returns what to record instead, if anything (ScanOptions.keep). */
  private skip (relPath: string, why: string): Node | undefined {
    this.warnIn(parentRel(relPath), `skipped ${show(relPath)}: ${why}`)
    return this.opts.keep?.(relPath)
  }

  /** A regular file whose stat the cache knows: no promise, no read. */
  private cachedFile (absPath: string, relPath: string, st: ScanStat, parent: DirNode): FileNode | undefined {
    if (this.opts.statCache === undefined || !st.isFile() || st.size > MAX_FILE_BIGINT) return undefined
    const cached = this.opts.statCache.lookup(relPath, st)
    if (cached === undefined) return undefined
    const file: FileNode = { kind: 'file', size: Number(st.size), exec: (st.mode & 0o100n) !== 0n, mtimeMs: floorMs(st.mtimeNs), chunks: cached }
    this.progress.files++
    this.progress.bytes += file.size
    this.keep({ rel: relPath, abs: absPath, file, stat: this.trusted(st) }, parent, st)
    return file
  }

  /** Records a file kept in the tree; `st` is the stat it was read or looked up with. */
  private keep (kept: KeptFile, parent: DirNode, st: ScanStat): void {
    this.files.push(kept)
    if (this.recs === undefined) return
    this.recs.get(parent)?.files.push(kept)
    // another link to it may be written through a directory the watch never saw
    if (st.nlink > 1n) this.opts.watch!.noisy(parentRel(kept.rel))
  }

  /** The stat, when the file had not changed for RACY_MARGIN_MS before the scan began. */
  private trusted (st: ScanStat): FileStatKey | undefined {
    if (!settledBefore(st, this.trustBeforeNs)) return undefined
    return { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino }
  }

  private async leaf (absPath: string, relPath: string, st: ScanStat, parent: DirNode): Promise<Node | undefined> {
    if (st.isSymbolicLink()) {
      let target: string
      try {
        target = await fsp.readlink(absPath)
      } catch (err) {
        if (!isSkippable(err)) throw err
        return this.skip(relPath, (err as Error).message)
      }
      if (target === '' || Buffer.byteLength(target) > MAX_LINK_TARGET_BYTES) {
        return this.skip(relPath, 'its symlink target is empty or too long')
      }
      return { kind: 'link', target }
    }
    if (!st.isFile()) return this.skip(relPath, `${specialKind(st)} cannot be synced`)
    if (st.size > BigInt(MAX_FILE_BYTES)) throw tooLarge(`${show(relPath)} is larger than ${MAX_FILE_BYTES} bytes`)
    const file: FileNode = { kind: 'file', size: Number(st.size), exec: (st.mode & 0o100n) !== 0n, mtimeMs: floorMs(st.mtimeNs), chunks: [] }
    this.progress.files++
    this.progress.bytes += file.size
    const cached = this.opts.statCache?.lookup(relPath, st)
    if (cached !== undefined) {
      file.chunks = cached
      this.keep({ rel: relPath, abs: absPath, file, stat: this.trusted(st) }, parent, st)
      return file
    }
    const queue = this.forWorkers(file.size) ? this.bigQueue : this.queue
    await queue.whenBelow(MAX_QUEUED_FILES / 2)
    queue.add(async () => {
      const got = await fileChunks(absPath, st, this.chunk, this.signal)
      if ('error' in got) {
        const name = path.basename(absPath)
        parent.entries.delete(name)
        this.progress.files--
        this.progress.bytes -= file.size
        const kept = this.skip(relPath, got.error)
        if (kept !== undefined) parent.entries.set(name, kept)
        return
      }
      if (got.stable) this.opts.statCache?.record(relPath, got.stat, got.chunks)
      else this.warnIn(parentRel(relPath), `${show(relPath)} kept changing during the scan; what was read is synced`)
      this.progress.bytes += got.size - file.size
      this.progress.hashedFiles++
      this.progress.hashedBytes += got.size
      file.size = got.size
      file.mtimeMs = floorMs(got.stat.mtimeNs)
      file.exec = (got.stat.mode & 0o100n) !== 0n
      file.chunks = got.chunks
      this.keep({ rel: relPath, abs: absPath, file, stat: got.stable ? this.trusted(got.stat) : undefined }, parent, got.stat)
      this.report()
    })
    return file
  }

  /** Where each distinct chunk can be read (the first file that holds it). */
  sources (): Map<string, ChunkSource> {
    const sources = new Map<string, ChunkSource>()
    for (const { abs: absPath, file, stat } of this.files) {
      let offset = 0
      for (const c of file.chunks) {
        const hex = Buffer.from(c.hash.buffer, c.hash.byteOffset, c.hash.byteLength).toString('hex')
        if (!sources.has(hex)) sources.set(hex, stat !== undefined ? { path: absPath, offset, size: c.size, stat } : { path: absPath, offset, size: c.size })
        offset += c.size
      }
    }
    return sources
  }

  private report (): void {
    if (this.opts.onProgress === undefined) return
    const now = Date.now()
    if (now - this.lastProgress < PROGRESS_INTERVAL_MS) return
    this.lastProgress = now
    this.opts.onProgress({ ...this.progress })
  }
}

/**
 * Gives the thread's stats (`got`, undefined when it failed) to the entries it was asked for.
 * A path the thread could not stat is stat'ed here again, for the error's own words.
 */
function fromThread (asked: Found[], got: BigInt64Array | undefined): void {
  for (let j = 0; j < asked.length; j++) {
    const f = asked[j]!
    if (f.st === undefined) f.st = got !== undefined && got[j * STAT_FIELDS]! >= 0n ? new PackedStat(got, j) : lstatBig(f.abs)
  }
}

function lstatBig (p: string): ScanStat | Error {
  try {
    return lstatSync(p, { bigint: true })
  } catch (err) {
    if (isSkippable(err)) return err as Error
    throw err
  }
}


function knownType (d: Dirent): boolean {
  return d.isFile() || d.isDirectory() || d.isSymbolicLink() || d.isFIFO() || d.isSocket() || d.isCharacterDevice() || d.isBlockDevice()
}

function specialKind (st: ScanStat): string {
  if (st.isFIFO()) return 'a fifo'
  if (st.isSocket()) return 'a socket'
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device'
  return 'a special file'
}

/** Errors that skip one path with a warning rather than fail the scan. */
function isSkippable (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'ENOTDIR' || code === 'ELOOP'
}

function tooLarge (msg: string): VgridError {
  return new VgridError('ERR_WORKSPACE_TOO_LARGE', msg, 'list what the task does not need in .vgridignore')
}

function join (rel: string, name: string): string {
  return rel === '' ? name : `${rel}/${name}`
}

function show (rel: string): string {
  return JSON.stringify(rel)
}

/** The first 200 characters of a path, for a message about a very long one. */
function showStart (rel: string): string {
  return rel.length <= 200 ? show(rel) : `${show(rel.slice(0, 200))}…`
}

export { floorMs }
