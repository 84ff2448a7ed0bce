/**
 * The executor brings its persistent copy of a workspace up to the submitter's tree: it
 * compares the trees from the root down (equal subtrees are skipped by hash), asks for the
 * chunks it lacks in its store (each distinct chunk once), and rewrites only the files that
 * changed, writing each as soon as its chunks are there.
 *
 * The copy's record is not trusted alone: before each reuse, checkCopy compares the disk with
 * it (stat only) and what differs is rewritten as well, so a command always starts on exactly
 * the submitter's files, whatever wrote into the copy since the last run.
 */
import { lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { setMaxListeners } from 'node:events'
import { VgridError } from '../common/errors.js'
import { formatBytes } from '../common/units.js'
import type { ChunkStore } from './store.js'
import type { BlobFetcher } from './fetcher.js'
import { decodeTree } from './tree-codec.js'
import { blobKey, hexOf } from './hash.js'
import { diffTrees } from './diff.js'
import { treeStats } from './tree-stats.js'
import { materialize } from './materialize.js'
import { checkCopy, markChanged } from './copy-check.js'
import { removeTree } from './remove-tree.js'
import type { StatCache } from './stat-cache.js'
import type { StatWorker } from './stat-workers.js'
import type { WatchedScan } from './scan-watch.js'
import type { FileWriter } from './file-writer.js'
import type { CopyChunks } from './copy-chunks.js'
import { createLogger } from '../common/log.js'
import { PULL_WINDOW_BYTES } from '../protocol/sync.js'

const log = createLogger('sync')
import type { Change, ChunkRef, DirNode, FileNode, Hash } from './types.js'

export interface SyncProgress {
  /** Bytes of files the copy needed, all told (changed files only). */
  totalBytes: number
  /** Of those, bytes that came over the network, in this many chunks. */
  sentBytes: number
  sentChunks: number
  /** Files written so far / to write. */
  files: number
  totalFiles: number
  /** Bytes of the whole tree that did not travel (unchanged files, chunks already stored). */
  reusedBytes: number
  done: boolean
}

export interface SyncCopyResult {
  tree: DirNode
  rootHash: Hash
  progress: SyncProgress
  /** The files this sync wrote into the copy (relative paths) and what they now hold. */
  written: Array<[string, FileNode]>
  /**
   * What had changed in the copy since its last sync, found by the check and put back: the
   * paths, or `whole` with why when the copy was checked from scratch instead.
   */
  repaired?: { paths: string[] } | { whole: string }
  /**
   * Blobs the store had held but lost (ChunkStore.lostWhy) that this sync fetched again,
   * counted by why: the submitter is told its run paid for a damaged store.
   */
  refetched?: Array<{ why: string, blobs: number }>
  /**
   * The copy is exactly as the last run left it: checked, nothing repaired, nothing written,
   * no directory made. (What a guest's run can skip: handing every entry to the guest user.)
   */
  untouched?: true
  /**
   * What this sync created in the copy (materialize's `made`): all that is not the guest's
   * yet when the copy was the guest's before. Undefined when the copy was written from
   * scratch (and for an untouched copy, which needs nothing).
   */
  made?: string[]
  /** The copy was empty before this sync: `made` is all it holds. */
  fresh?: true
}

const BASE_ROOT_SUFFIX = '.root'

/** The root the copy held after its last sync, if its records are still in the store. */
async function loadBase (copyDir: string, store: ChunkStore): Promise<DirNode | undefined> {
  try {
    const hex = readFileSync(copyDir + BASE_ROOT_SUFFIX, 'utf8').trim()
    if (!/^[0-9a-f]{64}$/.test(hex)) return undefined
    const { tree } = await decodeTree(Buffer.from(hex, 'hex'), async (h) => {
      const b = await store.get(h)
      if (b === undefined) throw new Error('evicted')
      return b
    })
    return tree
  } catch {
    return undefined
  }
}

/** The caller's tree if it is still what the copy holds (its root file agrees), else from the store. */
async function currentBase (copyDir: string, store: ChunkStore, known?: { rootHash: Hash, tree: DirNode }): Promise<DirNode | undefined> {
  if (known !== undefined) {
    let hex = ''
    try { hex = readFileSync(copyDir + BASE_ROOT_SUFFIX, 'utf8') } catch {}
    if (hex.trim() === hexOf(known.rootHash)) return known.tree
  }
  return await loadBase(copyDir, store)
}

/** Records the tree the copy now holds, with its records in the store for next time. */
export async function saveBase (copyDir: string, rootHash: Hash, blobs: Map<string, Uint8Array>, store: ChunkStore): Promise<void> {
  for (const [hex, data] of blobs) await store.put(Buffer.from(hex, 'hex'), data)
  await store.flush()
  await writeBaseRoot(copyDir, rootHash)
}

/**
 * The copy no longer matches any recorded tree (a command left something the outputs scan
 * refused): the next sync checks it from scratch, removing what the tree does not hold.
 */
export function forgetBase (copyDir: string): void {
  rmSync(copyDir + BASE_ROOT_SUFFIX, { force: true })
}

async function writeBaseRoot (copyDir: string, rootHash: Hash): Promise<void> {
  writeFileSync(copyDir + BASE_ROOT_SUFFIX + '.tmp', hexOf(rootHash) + '\n')
  renameSync(copyDir + BASE_ROOT_SUFFIX + '.tmp', copyDir + BASE_ROOT_SUFFIX)
}


/** The copy checked against its record, before the sync (prepareCopy). */
export interface PreparedCopy {
  /** The record the copy's last sync left, if still usable. */
  base: DirNode | undefined
  /** What the diff starts from: the record, with what the check found changed marked unknown. */
  onDisk: DirNode | undefined
  repaired: SyncCopyResult['repaired']
}

/**
 * The first half of a sync, which needs nothing from the submitter: the copy's record, and
 * what the disk says of it. An executor runs it while the submitter still scans (execute.ts),
 * then hands it to syncCopy (`prepared`): nothing else may use the copy in between.
 */
export async function prepareCopy (opts: Pick<SyncCopyOptions, 'copyDir' | 'store' | 'base' | 'statCache' | 'statWorker' | 'signal'> & { watch?: WatchedScan }): Promise<PreparedCopy> {
  const { copyDir, store } = opts
  // The copy's own directory may have been replaced too (by a link elsewhere): never enter it.
  const top = lstatSync(copyDir, { throwIfNoEntry: false })
  if (top !== undefined && !top.isDirectory()) await removeTree(copyDir)
  mkdirSync(copyDir, { recursive: true })
  let base = await currentBase(copyDir, store, opts.base)
  let onDisk = base
  let repaired: SyncCopyResult['repaired']
  if (base !== undefined) {
    const { statCache, statWorker, signal, watch } = opts
    const t0 = performance.now()
    const quiet = watch?.quietTag
    const check = await checkCopy(copyDir, base, { ...(statCache !== undefined ? { statCache } : {}), ...(statWorker !== undefined ? { statWorker } : {}), ...(watch !== undefined ? { watch } : {}), ...(signal !== undefined ? { signal } : {}) })
    log.debug(`checked ${copyDir} in ${Math.round(performance.now() - t0)} ms${quiet !== undefined && quiet === hexOf(base.hash) ? ' (nothing happened in it since the last check)' : statWorker?.available === true ? ' (two threads)' : ''}: ${'unusable' in check ? check.unusable : `${check.changed.length} changed`}`)
    if ('unusable' in check) {
      // materialize then removes whatever the tree does not hold and rewrites every file.
      base = onDisk = undefined
      repaired = { whole: check.unusable }
    } else if (check.changed.length > 0) {
      onDisk = markChanged(base, check.changed)
      repaired = { paths: check.changed }
    }
  }
  return { base, onDisk, repaired }
}

export interface SyncCopyOptions {
  copyDir: string
  /** The root the submitter offers (as its exec request said). */
  root: Hash
  /**
   * Opens the sync session, only when the copy does not already hold `root`; the caller
   * closes what it opened. Its root must be `root`.
   */
  openFetcher: () => Promise<BlobFetcher>
  store: ChunkStore
  /** What the copy holds, when the caller still has it in memory (saves decoding it again). */
  base?: { rootHash: Hash, tree: DirNode }
  /** The copy's stat cache: the check then also sees a rewrite that kept size and mtime. */
  statCache?: StatCache
  /** A thread that does half of the check's stats. */
  statWorker?: StatWorker
  /** A thread that writes the small files. */
  fileWriter?: FileWriter
  /**
   * Where the copies hold each chunk: the chunks this sync writes into one file only are
   * registered there instead of put in the store (each byte written once), and chunks the
   * store lacks are read from there before they are fetched.
   */
  copyChunks?: CopyChunks
  signal?: AbortSignal
  onProgress?: (p: SyncProgress) => void
  /** What prepareCopy found, when the caller ran it ahead (else syncCopy runs it). */
  prepared?: Promise<PreparedCopy>
  /** Chunks asked for ahead of the writers, at most (REQUEST_AHEAD_CHUNKS; tests ask for fewer). */
  requestAhead?: number
}

/**
 * Where a chunk the store lacks can be read while this sync writes `copyDir`: `copy`, in a
 * file that stays until the chunk is read (another copy; or the very file that needs it,
 * whose old self stays until its new one is renamed over it: a big file rewritten around an
 * insertion); `rescue`, only in a file of this copy that the sync removes or rewrites first
 * (removals go before any write: a renamed file), so it must be put in the store before.
 * A chunk found changed when read is fetched after all.
 */
function copyPlanner (copyChunks: CopyChunks, copyDir: string, changes: Change[]): (hash: Hash, needer: string) => 'copy' | 'rescue' | undefined {
  const touched = new Set(changes.map((c) => c.path))
  const goes = (rel: string): boolean => {
    // the file and each directory above it
    for (let i = rel.indexOf('/'); i !== -1; i = rel.indexOf('/', i + 1)) if (touched.has(rel.slice(0, i))) return true
    return touched.has(rel)
  }
  return (hash, needer) => {
    const w = copyChunks.locate(hash)
    if (w === undefined) return undefined
    return w.root !== copyDir || w.rel === needer || !goes(w.rel) ? 'copy' : 'rescue'
  }
}

/** Chunks asked for between two turns of the event loop while a sync is planned. */
const PLAN_YIELD_CHUNKS = 1024
/**
 * Chunks asked for and not yet taken by a writer, at most (and at most a fetch window of
 * their bytes, which is all the fetcher would ask the provider for anyway). Each one asked
 * for is a request with its promises and callbacks: asking for all at once held ~17,800 of
 * them for the 1 GiB tree of the sync bench (a heap snapshot of the executor mid-sync), and
 * a million-file tree would hold a million.
 */
export const REQUEST_AHEAD_CHUNKS = 4096

export async function syncCopy (opts: SyncCopyOptions): Promise<SyncCopyResult> {
  const { copyDir, store, root } = opts
  const { base, onDisk, repaired } = await (opts.prepared ?? prepareCopy(opts))
  const { copyChunks } = opts
  // After a restart, the copy's own chunks (an insertion rewrites a big file from them).
  if (copyChunks !== undefined && onDisk !== undefined && !copyChunks.knows(copyDir)) copyChunks.addTree(copyDir, onDisk)
  if (base !== undefined && onDisk === base && opts.base !== undefined && base === opts.base.tree && hexOf(opts.base.rootHash) === hexOf(root)) {
    // Nothing changed since the last run: one comparison, no disk, no stream.
    const whole = treeStats(base)
    const p: SyncProgress = { totalBytes: 0, sentBytes: 0, sentChunks: 0, files: 0, totalFiles: 0, reusedBytes: whole.bytes, done: true }
    opts.onProgress?.(p)
    return { tree: base, rootHash: root, progress: p, written: [], untouched: true }
  }
  const fetcher = await opts.openFetcher()
  if (hexOf(fetcher.root) !== hexOf(root)) throw new VgridError('ERR_BAD_MESSAGE', 'the sync session holds another tree than the one offered')
  const refetched = new Map<string, number>()
  const missed = (h: Hash): void => {
    const why = store.lostWhy(h)
    if (why !== undefined) refetched.set(why, (refetched.get(why) ?? 0) + 1)
  }
  const getBlob = async (h: Hash): Promise<Uint8Array> => {
    const local = await store.get(h)
    if (local !== undefined) return local
    missed(h)
    const data = await fetcher.fetch(h)
    await store.put(h, data)
    return data
  }
  // The record (not onDisk) lends decoded subtrees: it holds what their hashes name.
  const t0 = performance.now()
  const { tree, stats } = await decodeTree(fetcher.root, getBlob, base !== undefined ? { base } : {})
  const tDecoded = performance.now()
  const changes = diffTrees(onDisk, tree)
  const p: SyncProgress = { totalBytes: 0, sentBytes: 0, sentChunks: 0, files: 0, totalFiles: 0, reusedBytes: 0, done: false }

  // Ask for every distinct chunk the store lacks, in the order files will be written, as the
  // plan finds them: the first wants leave while the rest is planned (24,000 chunks took
  // ~0.45 s to plan, the network idle meanwhile). Each stays in the fetcher's window until a
  // file takes it, so a slow disk slows the network instead of filling memory (files are
  // written in this order, so the chunks in the window are always ones a writer is about to
  // take).
  const arriving = new Map<string, Promise<{ data: Uint8Array, release: () => void }>>()
  const written: Array<[string, FileNode]> = []
  const wanted = new Map<string, ChunkRef>()
  // Wanted and not yet asked for, in the order files will be written; asked for as writers
  // take what was (pump), or at once by a writer that needs one of them first.
  const later = new Set<string>()
  const order: string[] = []
  let nextInOrder = 0
  let aheadBytes = 0
  const aheadMax = opts.requestAhead ?? REQUEST_AHEAD_CHUNKS
  // How many times the files to write use each chunk: one that is used once is written to
  // its file only (copyChunks), one used again stays in the store for its next user.
  const uses = new Map<string, number>()
  const toStore = (key: string): boolean => copyChunks === undefined || uses.get(key)! > 1
  // What arrives before the plan is whole waits for it (how many files use a chunk, and
  // whether the disk has room): nothing is written before then.
  let planned!: { resolve: () => void, reject: (err: Error) => void }
  const plan = new Promise<void>((resolve, reject) => { planned = { resolve, reject } })
  plan.catch(() => {})
  const request = (key: string, ref: ChunkRef): void => {
    missed(ref.hash)
    const a = fetcher.fetchHeld(ref.hash, ref.size).then(async (got) => {
      p.sentBytes += got.data.byteLength
      p.sentChunks++
      await plan
      if (toStore(key)) await store.put(ref.hash, got.data)
      return got
    })
    // Unhandled rejections stay with the file that needs the chunk.
    a.catch(() => {})
    arriving.set(key, a)
    aheadBytes += ref.size
  }
  const pump = (): void => {
    while (nextInOrder < order.length && (arriving.size === 0 || (arriving.size < aheadMax && aheadBytes < PULL_WINDOW_BYTES))) {
      const key = order[nextInOrder++]!
      // (not when asked for already, by a writer that needed it first)
      if (later.delete(key)) request(key, wanted.get(key)!)
    }
  }
  const inCopies = copyChunks === undefined ? () => undefined : copyPlanner(copyChunks, copyDir, changes)
  try {
    for (const c of changes) {
      if (c.node?.kind !== 'file') continue
      written.push([c.path, c.node])
      p.totalFiles++
      p.totalBytes += c.node.size
      for (const ref of c.node.chunks) {
        const key = blobKey(ref.hash)
        uses.set(key, (uses.get(key) ?? 0) + 1)
        if (wanted.has(key) || store.hasKey(key)) continue
        const where = inCopies(ref.hash, c.path)
        if (where === 'copy') continue
        const rescued = where === 'rescue' ? copyChunks!.get(ref.hash) : undefined
        if (rescued !== undefined) {
          await store.put(ref.hash, rescued)
        } else {
          wanted.set(key, ref)
          later.add(key)
          order.push(key)
          pump()
          // a turn of the loop now and then, for the fetcher to send what was asked for
          if (wanted.size % PLAN_YIELD_CHUNKS === 0) await new Promise((resolve) => setImmediate(resolve))
        }
      }
    }
    // Refused before a byte is written, rather than half-way with ENOSPC: the files to write
    // land in the copy and the chunks the store keeps in the store, on the same disk.
    let need = p.totalBytes
    for (const [key, ref] of wanted) if (toStore(key)) need += ref.size
    const room = need > 0 ? await store.roomNow() : undefined
    if (room !== undefined && need > room) {
      throw new VgridError('ERR_NO_SPACE', `needs ${formatBytes(need)}, has ${formatBytes(room)} in ${store.dir}`, 'free space on that disk, or move its VGRID_HOME to a larger one')
    }
  } catch (err) {
    planned.reject(err as Error)
    throw err
  }
  planned.resolve()
  const tPlanned = performance.now()

  // A file that cannot be written (ENOSPC…) ends the sync at once. The files in flight would
  // otherwise wait for chunks that the fetcher's window, full of chunks held for files that
  // will now never start, cannot take in: until the provider's idle timeout (60 s) broke
  // the stream, and only then did the error reach the user.
  const stop = new AbortController()
  // every chunk a writer waits for listens to it
  setMaxListeners(0, stop.signal)
  const unlessStopped = async <T>(p: Promise<T>): Promise<T> => await new Promise<T>((resolve, reject) => {
    if (stop.signal.aborted) { reject(stop.signal.reason); return }
    const onAbort = (): void => { reject(stop.signal.reason) }
    stop.signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => { stop.signal.removeEventListener('abort', onAbort) })
  })
  // Fetched chunks that only the file taking them holds (not the store): once written, their
  // buffers go back to the thread that received them (BlobFetcher.giveBack).
  const fileOnly = new WeakSet<Uint8Array>()
  const readChunk = async (ref: ChunkRef): Promise<Uint8Array> => {
    const key = blobKey(ref.hash)
    if (later.delete(key)) request(key, wanted.get(key)!)
    const pending = arriving.get(key)
    if (pending !== undefined) {
      const { data, release } = await unlessStopped(pending)
      // a chunk two files share is released once, by whichever file got it first
      release()
      if (arriving.delete(key)) {
        // its place goes to the next chunk in the files' order
        aheadBytes -= wanted.get(key)!.size
        pump()
      }
      if (!toStore(key)) fileOnly.add(data)
      return data
    }
    const data = await store.get(ref.hash) ?? copyChunks?.get(ref.hash)
    if (data !== undefined) return data
    // Evicted between the plan and now, changed in the copy that held it, or found corrupt:
    // fetch it after all.
    missed(ref.hash)
    const fetched = await unlessStopped(fetcher.fetch(ref.hash, ref.size))
    p.sentBytes += fetched.byteLength
    p.sentChunks++
    return fetched
  }
  let lastReport = 0
  const { made, fresh } = await materialize(copyDir, onDisk, tree, readChunk, {
    ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    ...(opts.fileWriter !== undefined ? { writer: opts.fileWriter } : {}),
    onError: (err) => { stop.abort(err) },
    written: (data) => { if (fileOnly.delete(data)) fetcher.giveBack(data) },
    onProgress: ({ files }) => {
      p.files = files
      const now = Date.now()
      if (now - lastReport >= 100) { lastReport = now; opts.onProgress?.({ ...p }) }
    }
  })
  await store.flush()
  log.debug(`synced ${copyDir}: tree decoded in ${Math.round(tDecoded - t0)} ms, ${changes.length} changes planned (${wanted.size} chunks asked for) in ${Math.round(tPlanned - tDecoded)} ms, written in ${Math.round(performance.now() - tPlanned)} ms`)
  if (copyChunks !== undefined) for (const [rel, node] of written) copyChunks.add(copyDir, rel, node)
  p.files = p.totalFiles
  p.reusedBytes = Math.max(0, stats.bytes - p.sentBytes)
  p.done = true
  opts.onProgress?.({ ...p })
  await writeBaseRoot(copyDir, fetcher.root)
  return {
    tree, rootHash: fetcher.root, progress: p, written,
    ...(made !== undefined ? { made } : {}),
    ...(fresh === true ? { fresh } : {}),
    ...(repaired !== undefined ? { repaired } : {}),
    ...(refetched.size > 0 ? { refetched: [...refetched].map(([why, blobs]) => ({ why, blobs })) } : {})
  }
}

