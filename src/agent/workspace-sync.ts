/**
 * Workspace sync inside the agent. As submitter it scans the workspace (with a stat cache,
 * so unchanged files are not read again), exports the tree to the member the task was placed
 * on, and brings the outputs back into the workspace. As executor it keeps persistent copies
 * of the workspaces it ran tasks for (one per concurrent task: a copy is never shared by two
 * running commands), pulls them up to date, and offers what the command changed.
 */
import fs2 from 'node:fs'
import { availableParallelism } from 'node:os'
import path from 'node:path'
import { createHash } from 'node:crypto'
import { FreshRuns } from '../common/fresh-runs.js'
import { VgridError, clipText } from '../common/errors.js'
import type { FrameChannel } from '../common/channel.js'
import type { Grid } from '../grid/index.js'
import {
  ChunkStore, CopyChunks, ExportRegistry, FileWriter, PlaneServer, PlanePullers, planeConnections, dialPlane, type PlaneGrant, type Lane, StatWorker, WatchHub, BlobFetcher, StatCache, EncodeMemo, SYNC_PROTOCOL, SYNC_MAX_FRAME_BYTES,
  scanWorkspace, decodeTree, encodeTree, applyOutputs, syncCopy, saveBase, forgetBase, nodeAt, hexOf, loadIgnoreRules,
  readChunkAt, prepareCopy, checkCopy, treeStats, WorkerPool, defaultScanWorkers, type CopyCheck, type PreparedCopy, type DirNode, type ChunkSource, type SyncCopyResult, type SyncProgress, type WorkspaceRef
} from '../fs-sync/index.js'
import type { ExecEvent } from '../exec/index.js'
import { createLogger } from '../common/log.js'
import { Unreachable } from '../fs-sync/plane/unreachable.js'

const log = createLogger('sync')

/** Stat caches kept in memory (one per workspace scanned and per copy). */
const MAX_CACHED_STAT_CACHES = 64
/**
 * A stat cache is saved this long after the scan or check that changed it, off the run's path
 * (serializing 10,000 entries: 15–70 ms), and not at all when another scan of it began by then.
 */
const STAT_CACHE_SAVE_DELAY_MS = 2_000
/** The scans' hashing threads end after this long without a scan. */
const SCAN_POOL_IDLE_MS = 60_000
/**
 * The submitter's scan takes two thirds of its stats on the stat thread from this many cores
 * on. A scan alone of 10,000 unchanged files: 165 → 115 ms here (2 cores). But with two
 * agents on these 2 cores, the thread's stats came out of the executor's check of its copy,
 * which runs at the same time: `vrun true` with nothing changed, interleaved, 489 → 524 ms.
 */
const SCAN_STAT_THREAD_MIN_CORES = 4
/**
 * Copies whose tree stays decoded in memory, the most recently synced. A tree is the whole
 * listing of a workspace (megabytes for 10,000 files), and an executor makes a copy per
 * workspace, submitter and task running at once: kept for every copy ever made, they grew
 * without end. A copy past this decodes its tree from the store at its next sync.
 */
export const MAX_CACHED_COPY_TREES = 64
/** How long an executor keeps outputs on offer for a submitter that has not started pulling. */
export const OUTPUTS_OPEN_TIMEOUT_MS = 60_000
const KEY_RE = /^[0-9a-f]{32}$/

export interface WorkspaceScan {
  ref: WorkspaceRef
  tree: DirNode
  rootHash: Uint8Array
  blobs: Map<string, Uint8Array>
  /** Where each chunk lies in the workspace, by hex hash (built on first use). */
  readonly sources: Map<string, ChunkSource>
  /** Names the workspace to executors, without revealing its path. */
  key: string
  /** When the scan began: local edits around it are compared by content on the way back. */
  startedMs: number
  /** What the scan left out and why (a fifo, an unreadable file…), one line each, for the user. */
  warnings: string[]
  /** The agent's home inside the workspace, relative (homeWithin), which the scan left out. */
  home?: string
  /** Bytes of its files: at most what a member without any of it must take in (placement's bound). */
  bytes: number
}

type Send = (ev: ExecEvent) => Promise<void>

/**
 * What outputs are brought back against: the tree the command started from (or how to fetch
 * it from the executor's outputs session, for an owner that restarted since it sent it), and
 * where the workspace already holds chunks. A WorkspaceScan is one.
 */
export interface OutputsBase {
  ref: WorkspaceRef
  tree: DirNode | ((fetch: (h: Uint8Array) => Promise<Uint8Array>) => Promise<DirNode>)
  readonly sources: ReadonlyMap<string, ChunkSource>
  startedMs: number
  home?: string
}

/**
 * Where the agent's home lies in a workspace ('/'-separated, relative), when it does: it holds
 * the grid's swarm key and this member's identity, so it is never synced, whatever the ignore
 * files say (`cd ~ && vrun …` with the default ~/.vgrid); '' when the workspace is the home
 * itself. A workspace inside the home (a nested vrun in a copy) is not affected.
 */
export function homeWithin (workspace: string, home: string): string | undefined {
  const real = (p: string): string => { try { return fs2.realpathSync(p) } catch { return path.resolve(p) } }
  const rel = path.relative(real(workspace), real(home))
  if (rel === '..' || rel.startsWith('..' + path.sep) || path.isAbsolute(rel)) return undefined
  return rel.split(path.sep).join('/')
}

function toSyncEvent (phase: 'up' | 'down', p: SyncProgress): ExecEvent {
  return { t: 'sync', phase, files: p.files, totalFiles: p.totalFiles, sentBytes: p.sentBytes, sentChunks: p.sentChunks, totalBytes: p.totalBytes, reusedBytes: p.reusedBytes, done: p.done }
}

/** A member whose data plane could not be reached is pulled from over libp2p streams for this long. */
export const PLANE_RETRY_MS = 10 * 60_000

export class WorkspaceSync {
  readonly registry: ExportRegistry
  private readonly busyCopies = new Set<string>()
  /** Stat caches stay loaded between runs: reading and parsing them is a good part of a rescan. */
  private readonly statCaches = new Map<string, { cache: StatCache, memo: EncodeMemo }>()
  /** The tree each copy holds, so an unchanged workspace is not decoded from the store again. */
  private readonly copyTrees = new Map<string, { rootHash: Uint8Array, tree: DirNode }>()
  /** Scans of one workspace, shared by the runs that ask while one is under way (see scan). */
  private readonly scans = new FreshRuns<WorkspaceScan>()
  /**
   * Each workspace's size at its last scan, by directory: placement's bound before a new
   * scan; and how many entries it had (a small tree is not watched).
   */
  private readonly sizes = new Map<string, { bytes: number, entries: number }>()
  /** The totals of the trees copies hold (a small copy is not watched). */
  private readonly copyStats = new WeakMap<DirNode, ReturnType<typeof treeStats>>()
  /**
   * Stats beside the main thread: two thirds of those of a scan of 2,048 files or more (the
   * submitter's from SCAN_STAT_THREAD_MIN_CORES cores on), half of those of the check after a
   * command and of a check that did not start while the submitter scanned. Started by the
   * first scan that uses it or the first copy this agent pulls, ready for the next.
   */
  private statWorker: StatWorker | undefined
  private statWorkerTried = false
  /** Writes the small files of the copies, started by the first copy this agent pulls. */
  private fileWriter: FileWriter | undefined
  private fileWriterTried = false
  /** Stat caches to save soon (saveSoon), with the scan each was at. */
  private readonly unsaved = new Map<StatCache, number>()
  private saveTimer: NodeJS.Timeout | undefined
  /** The scans' hashing threads, kept between scans; how many scans use them; their idle timer. */
  private scanPool: WorkerPool | undefined
  private scanPoolUsers = 0
  private scanPoolTimer: NodeJS.Timeout | undefined
  /** Members whose data plane could not be reached lately. */
  private readonly planeDown = new Unreachable(PLANE_RETRY_MS)
  /** The threads of this agent's data plane connections, started by its first pull over the plane. */
  private pullers: PlanePullers | undefined
  /** Where the copies hold the chunks written into them (not put in the store as well). */
  private readonly copyChunks = new CopyChunks()
  /**
   * The watches of the workspaces this agent scanned (scan-watch.ts): a scan reads only the
   * directories where something happened since the last one. Off with VGRID_WATCH=off.
   */
  private readonly watches: WatchHub | undefined

  /** A place's stat cache, with the directory records of its last scan. */
  private async statCache (file: string, racyMarginMs?: number): Promise<{ cache: StatCache, memo: EncodeMemo }> {
    let got = this.statCaches.get(file)
    if (got === undefined) {
      const cache = await StatCache.load(file, racyMarginMs !== undefined ? { racyMarginMs } : {})
      got = { cache, memo: new EncodeMemo() }
      if (this.statCaches.size >= MAX_CACHED_STAT_CACHES) {
        const [oldest, old] = this.statCaches.entries().next().value as [string, { cache: StatCache }]
        this.statCaches.delete(oldest)
        await this.saveDue(old.cache)
      }
      this.statCaches.set(file, got)
    }
    return got
  }

  /** Keeps the tree the copy now holds, first among those kept (MAX_CACHED_COPY_TREES). */
  private rememberTree (copyDir: string, known: { rootHash: Uint8Array, tree: DirNode }): void {
    this.copyTrees.delete(copyDir)
    if (this.copyTrees.size >= MAX_CACHED_COPY_TREES) this.copyTrees.delete(this.copyTrees.keys().next().value as string)
    this.copyTrees.set(copyDir, known)
  }

  /** How many copies' trees are kept in memory (for tests). */
  get cachedTrees (): number {
    return this.copyTrees.size
  }

  private constructor (private readonly home: string, private readonly grid: Grid, readonly store: ChunkStore, private readonly plane?: PlaneServer) {
    this.registry = new ExportRegistry(plane)
    this.watches = process.env.VGRID_WATCH === 'off' ? undefined : WatchHub.open(path.join(home, 'watch'))
  }

  /**
   * `planeHost`: the address the data plane listens on (the agent's libp2p one); without it,
   * or with VGRID_DATA_PLANE=off, every byte goes over libp2p streams.
   */
  static async start (home: string, grid: Grid, capBytes?: number, planeHost?: string): Promise<WorkspaceSync> {
    const store = await ChunkStore.open(path.join(home, 'store'), capBytes !== undefined ? { capBytes } : {})
    const plane = planeHost !== undefined && process.env.VGRID_DATA_PLANE !== 'off' ? new PlaneServer(planeHost, planeConnections()) : undefined
    const sync = new WorkspaceSync(home, grid, store, plane)
    await grid.handle(SYNC_PROTOCOL, sync.registry.serve, { maxFrameBytes: SYNC_MAX_FRAME_BYTES })
    return sync
  }

  /** Saves `cache` in STAT_CACHE_SAVE_DELAY_MS, unless another scan of it began by then (it saves in turn). */
  private saveSoon (cache: StatCache): void {
    this.unsaved.set(cache, cache.generation)
    this.saveTimer ??= setTimeout(() => {
      this.saveTimer = undefined
      void Promise.all([...this.unsaved.keys()].map(async (c) => { await this.saveDue(c) }))
    }, STAT_CACHE_SAVE_DELAY_MS).unref()
  }

  /** The save saveSoon put off for `cache`, now, if it is still due. */
  private async saveDue (cache: StatCache): Promise<void> {
    const at = this.unsaved.get(cache)
    if (at === undefined) return
    this.unsaved.delete(cache)
    if (cache.generation !== at) return
    await cache.save().catch((err) => { log.warn(`could not save the stat cache ${cache.file ?? ''}`, err) })
  }

  /** The scans' hashing threads (undefined when running from sources); `release` once the scan ended. */
  private scanThreads (): { pool: WorkerPool | undefined, release: () => void } {
    const n = defaultScanWorkers()
    if (n === 0) return { pool: undefined, release: () => {} }
    if (this.scanPool === undefined || this.scanPool.isClosed) this.scanPool = new WorkerPool(n)
    const pool = this.scanPool
    this.scanPoolUsers++
    clearTimeout(this.scanPoolTimer)
    let released = false
    return {
      pool,
      release: () => {
        if (released) return
        released = true
        if (--this.scanPoolUsers > 0) return
        this.scanPoolTimer = setTimeout(() => {
          if (this.scanPoolUsers > 0 || this.scanPool !== pool) return
          this.scanPool = undefined
          void pool.close()
        }, SCAN_POOL_IDLE_MS).unref()
      }
    }
  }

  async close (): Promise<void> {
    clearTimeout(this.saveTimer)
    clearTimeout(this.scanPoolTimer)
    this.watches?.close()
    await Promise.all([...this.unsaved.keys()].map(async (c) => { await this.saveDue(c) }))
    await this.scanPool?.close()
    await this.plane?.close()
    await this.pullers?.close()
    await this.statWorker?.close()
    await this.fileWriter?.close()
    await this.store.close()
  }

  /**
   * The data plane connections of one pull: run by threads, each verifying what it receives,
   * when running built (planeConnections() of them); from sources, one on this thread.
   */
  private async dialPlane (host: string, grant: PlaneGrant, signal?: AbortSignal): Promise<Lane[]> {
    if (!PlanePullers.available) return [{ channel: await dialPlane(host, grant.ports[0]!, grant, SYNC_MAX_FRAME_BYTES, signal), verified: false }]
    const n = planeConnections()
    this.pullers ??= new PlanePullers(n)
    const pullers = this.pullers
    // spread over the provider's listeners (each its own thread there)
    const dials = await Promise.allSettled(Array.from({ length: n }, async (_, i) => await pullers.dial(host, grant.ports[i % grant.ports.length]!, grant, SYNC_MAX_FRAME_BYTES, signal)))
    const free = (data: Uint8Array): boolean => pullers.giveBack(data)
    const lanes = dials.flatMap((d) => d.status === 'fulfilled' ? [{ channel: d.value, verified: true, free }] : [])
    const failed = dials.find((d) => d.status === 'rejected')
    if (lanes.length === 0 && failed !== undefined) throw failed.reason
    return lanes
  }

  /** Opens a sync session on `peer`, over its data plane when it grants one and we can reach it. */
  private async openFetcher (peer: string, session: string, signal?: AbortSignal): Promise<BlobFetcher> {
    const channel: FrameChannel = await this.grid.open(peer, SYNC_PROTOCOL, { maxFrameBytes: SYNC_MAX_FRAME_BYTES, ...(signal !== undefined ? { signal } : {}) })
    const host = process.env.VGRID_DATA_PLANE === 'off' || this.planeDown.has(peer) ? undefined : this.grid.remoteHost(peer)
    const dial = async (grant: PlaneGrant): Promise<Lane[]> => {
      try {
        return await this.dialPlane(host!, grant, signal)
      } catch (err) {
        if (signal?.aborted !== true) {
          // a firewall that drops the port would cost every sync the connect timeout
          this.planeDown.note(peer)
          log.warn(`no data plane connection to ${host!} (${(err as Error).message}): syncs with member ${peer.slice(-8)} go over libp2p streams for the next ${PLANE_RETRY_MS / 60_000} min`)
        }
        throw err
      }
    }
    try {
      return await BlobFetcher.open(channel, session, host === undefined ? undefined : dial)
    } catch (err) {
      channel.destroy()
      throw err
    }
  }

  // ── submitter ──────────────────────────────────────────────────────────────────────────

  /**
   * A snapshot of the workspace taken after this call: calls that come while a scan of the
   * same workspace runs share the next one (which starts once it is done), so a burst of
   * tasks from one workspace costs two scans, not one each, and none sees an older state
   * than the workspace had when it asked.
   */
  async scan (ref: WorkspaceRef, signal?: AbortSignal): Promise<WorkspaceScan> {
    return await this.scans.run(`${ref.dir}\0${ref.cwd}`, async () => await this.scanNow(ref, signal))
  }

  /** What names a workspace's copies on an executor (with the submitter's id): known before its scan. */
  workspaceKey (ref: WorkspaceRef): string {
    return createHash('sha256').update(ref.dir).digest('hex').slice(0, 32)
  }

  private async scanNow (ref: WorkspaceRef, signal?: AbortSignal): Promise<WorkspaceScan> {
    const key = this.workspaceKey(ref)
    const { cache, memo } = await this.statCache(path.join(this.home, 'statcache', `${key}.bin`))
    const t0 = performance.now()
    const home = homeWithin(ref.dir, this.home)
    if (home === '') {
      throw new VgridError('ERR_BAD_ARGUMENT', `the workspace ${ref.dir} is this agent's home, which holds the grid's keys`,
        'run vrun from a project directory, or give --no-sync')
    }
    const warnings: string[] = []
    const onWarning = (msg: string): void => { warnings.push(msg); log.debug(`${ref.dir}: ${msg}`) }
    const watch = await this.watches?.tree(path.resolve(ref.dir)).begin(this.sizes.get(ref.dir)?.entries)
    const threads = this.scanThreads()
    let scan: Awaited<ReturnType<typeof scanWorkspace>>
    try {
      const statWorker = availableParallelism() >= SCAN_STAT_THREAD_MIN_CORES ? this.statThread() : undefined
      scan = await scanWorkspace(ref.dir, {
        statCache: cache, memo, onWarning,
        ...(threads.pool !== undefined ? { pool: threads.pool } : {}),
        ...(statWorker !== undefined ? { statWorker } : {}),
        ...(home !== undefined ? { exclude: [home] } : {}),
        ...(watch !== undefined ? { watch } : {}),
        ...(signal !== undefined ? { signal } : {})
      })
    } finally {
      // (the scan ends it; this is for one that failed before it began)
      watch?.finish(false)
      threads.release()
    }
    this.saveSoon(cache)
    log.debug(`scanned ${ref.dir}: ${scan.stats.files} files, ${scan.stats.bytes} bytes in ${Math.round(performance.now() - t0)} ms${watch !== undefined ? `, ${watch.reused} directories unread` : ''}`)
    if (this.sizes.size >= MAX_CACHED_STAT_CACHES) this.sizes.delete(this.sizes.keys().next().value as string)
    this.sizes.set(ref.dir, { bytes: scan.stats.bytes, entries: scan.stats.files + scan.stats.links + scan.stats.dirs })
    return { ref, tree: scan.tree, rootHash: scan.rootHash, blobs: scan.blobs, get sources () { return scan.sources }, key, startedMs: scan.startedMs, warnings, bytes: scan.stats.bytes, ...(home !== undefined ? { home } : {}) }
  }

  /** The workspace's size at its last scan here, if it was scanned. */
  knownBytes (ref: WorkspaceRef): number | undefined {
    return this.sizes.get(ref.dir)?.bytes
  }

  exportTo (scan: WorkspaceScan, peer: string): { session: string, root: Uint8Array, key: string } {
    const session = this.registry.add({ rootHash: scan.rootHash, blobs: scan.blobs, sources: { get: (hex) => scan.sources.get(hex) }, peer })
    return { session, root: scan.rootHash, key: scan.key }
  }

  /**
   * The outputs of a detached run its owner re-attached to (this agent restarted since it
   * sent the workspace): the tree it sent comes from the executor (`outputs.base`), so what
   * the user changed here meanwhile is still told from what the command changed.
   */
  async bringBackReattached (ref: WorkspaceRef, executor: string, outputs: { root: Uint8Array, session: string, base?: Uint8Array }, task: string, startedMs: number, send: Send): Promise<void> {
    if (outputs.base === undefined) throw new VgridError('ERR_BAD_MESSAGE', 'the outputs of a re-attached run came without the tree they started from')
    const base = outputs.base
    const home = homeWithin(ref.dir, this.home)
    await this.bringBack({ ref, tree: async (fetch) => (await decodeTree(base, fetch)).tree, sources: new Map(), startedMs, ...(home !== undefined && home !== '' ? { home } : {}) },
      executor, outputs, task, send)
  }

  /** Pulls the executor's result and applies it to the workspace; conflicts are told to the user. */
  async bringBack (from: OutputsBase, executor: string, outputs: { root: Uint8Array, session: string }, task: string, send: Send): Promise<void> {
    const fetcher = await this.openFetcher(executor, outputs.session)
    try {
      if (Buffer.compare(Buffer.from(fetcher.root), Buffer.from(outputs.root)) !== 0) throw new VgridError('ERR_BAD_MESSAGE', 'the outputs session holds another tree')
      const fetch = async (h: Uint8Array): Promise<Uint8Array> => await fetcher.fetch(h)
      const baseTree = typeof from.tree === 'function' ? await from.tree(fetch) : from.tree
      const { tree } = await decodeTree(outputs.root, fetch, { base: baseTree })
      const local = from.sources
      const p: SyncProgress = { files: 0, totalFiles: 0, sentBytes: 0, sentChunks: 0, totalBytes: 0, reusedBytes: 0, done: false }
      const rules = await loadIgnoreRules(from.ref.dir)
      // The agent's home never travels (scanNow), so nothing may come back into it either.
      const { home } = from
      const isHome = (rel: string): boolean => home !== undefined && (rel === home || rel.startsWith(home + '/'))
      const result = await applyOutputs(from.ref.dir, baseTree, tree, async (ref) => {
        // A chunk the workspace already has (a copied file) need not travel.
        const src = local.get(hexOf(ref.hash))
        if (src !== undefined) {
          const data = await readChunkAt(src, ref.hash)
          if (data !== undefined) return data
        }
        const data = await fetcher.fetch(ref.hash, ref.size)
        p.sentBytes += data.byteLength
        p.sentChunks++
        return data
      }, {
        taskId: task,
        snapshotStartedMs: from.startedMs,
        isIgnored: (rel, isDir) => isHome(rel) || rules.ignores(rel, isDir),
        onConflict: (rel, conflictPath, deletedHere) => {
          void send({
            t: 'notice',
            text: clipText(conflictPath === undefined
              ? `${rel} changed here while the command ran, and the command deleted it: kept yours`
              : deletedHere
                ? `${rel} was deleted here while the command ran, and the command changed it: kept it deleted, wrote the command's as ${conflictPath}`
                : `${rel} changed here while the command ran: kept yours, wrote the command's as ${conflictPath}`)
          })
        }
      })
      for (const r of result.refused) await send({ t: 'notice', text: clipText(`did not bring back ${r.path}: ${r.reason}`) })
      p.totalFiles = p.files = result.written.length + result.deleted.length
      p.done = true
      if (p.totalFiles > 0) await send(toSyncEvent('down', p))
    } finally {
      fetcher.close()
    }
  }

  // ── executor ───────────────────────────────────────────────────────────────────────────

  /** A copy of the submitter's workspace that no other running task uses. */
  async acquireCopy (submitter: string, key: string): Promise<{ dir: string, release: () => void }> {
    if (!KEY_RE.test(key)) throw new VgridError('ERR_BAD_MESSAGE', 'malformed message: workspace key')
    // Scoped by the submitter's authenticated id: no peer can reach another's copies.
    const base = path.join(this.home, 'workspaces', createHash('sha256').update(`${submitter}\0${key}`).digest('hex').slice(0, 32))
    for (let slot = 0; ; slot++) {
      const dir = path.join(base, String(slot))
      if (this.busyCopies.has(dir)) continue
      this.busyCopies.add(dir)
      fs2.mkdirSync(base, { recursive: true })
      return { dir, release: () => { this.busyCopies.delete(dir) } }
    }
  }

  /** The stat thread (statWorker), started at the first call; undefined when running from sources. */
  private statThread (): StatWorker | undefined {
    if (!this.statWorkerTried) {
      this.statWorkerTried = true
      this.statWorker = StatWorker.start()
    }
    return this.statWorker
  }

  /** The threads a copy's check and sync use, started by the first copy this agent pulls. */
  private startCopyThreads (): void {
    this.statThread()
    if (this.fileWriterTried) return
    this.fileWriterTried = true
    this.fileWriter = FileWriter.start()
  }

  /**
   * The check of a copy before its sync (prepareCopy), started while the submitter still
   * scans; pullCopy takes it. A failed check fails the pull, not before. It runs on this
   * thread alone: the submitter's scan takes longer anyway (10,000 files: ~65 ms to check on
   * one thread, ~90 to scan), and a second thread only added CPU (~100 ms in all against
   * ~65), which on a machine that runs both agents came out of the scan: interleaved
   * nothing-changed runs on this 2-core VM, 411–446 → 391–407 ms. The check after the
   * command, which the submitter does wait for, keeps both threads (unchangedSince).
   */
  prepareCopy (copyDir: string, signal?: AbortSignal): Promise<PreparedCopy> {
    const checked = (async () => {
      const { cache } = await this.statCache(copyDir + '.statcache', 0)
      this.startCopyThreads()
      const known = this.copyTrees.get(copyDir)
      const watch = await this.watches?.tree(copyDir).begin(known !== undefined ? this.entriesOf(known.tree) : undefined)
      try {
        return await prepareCopy({
          copyDir, store: this.store, statCache: cache,
          ...(known !== undefined ? { base: known } : {}),
          ...(watch !== undefined ? { watch } : {}),
          ...(signal !== undefined ? { signal } : {})
        })
      } finally {
        // (the check ends it; this is for a prepare that failed before it)
        watch?.finish(false)
      }
    })()
    checked.catch(() => {})
    return checked
  }

  async pullCopy (copyDir: string, submitter: string, offer: { session: string, root: Uint8Array }, send: Send, signal?: AbortSignal, prepared?: Promise<PreparedCopy>): Promise<SyncCopyResult> {
    let fetcher: BlobFetcher | undefined
    const t0 = performance.now()
    // The rescans' cache: it lets the check before reuse compare ctimes and inodes too.
    const { cache } = await this.statCache(copyDir + '.statcache', 0)
    this.startCopyThreads()
    try {
      const synced = await syncCopy({
        copyDir, root: offer.root, store: this.store, statCache: cache, ...(this.statWorker !== undefined ? { statWorker: this.statWorker } : {}),
        ...(this.fileWriter !== undefined ? { fileWriter: this.fileWriter } : {}),
        copyChunks: this.copyChunks,
        ...(prepared !== undefined ? { prepared } : {}),
        openFetcher: async () => {
          fetcher = await this.openFetcher(submitter, offer.session, signal)
          return fetcher
        },
        ...(this.copyTrees.has(copyDir) ? { base: this.copyTrees.get(copyDir)! } : {}),
        ...(signal !== undefined ? { signal } : {}),
        onProgress: (p) => { void send(toSyncEvent('up', p)).catch(() => {}) }
      })
      if (synced.repaired !== undefined) await this.tellRepaired(copyDir, synced.repaired, send)
      for (const { why, blobs } of synced.refetched ?? []) {
        // The store's log line says what was cut; the user learns why this sync sent more.
        await send({ t: 'notice', text: clipText(`the chunk store on this member had lost ${blobs} ${blobs === 1 ? 'piece' : 'pieces'} of your files (${why}): sent again from your workspace`) }).catch(() => {})
      }
      return synced
    } finally {
      if (fetcher !== undefined) {
        log.debug(`pulled ${copyDir}: ${fetcher.stats.blobs} blobs (${fetcher.stats.givenBack} given back to their thread once written), ${fetcher.stats.bytes} bytes in ${Math.round(performance.now() - t0)} ms over ${fetcher.planeConnections > 0 ? `${fetcher.planeConnections} data plane connection(s)` : 'the sync stream'}`)
        fetcher.close()
      }
    }
  }

  /**
   * This agent has just written these files from a tree that says what they hold: the rescan
   * after the command need not read them again (a first sync of 10,000 small files: 505 →
   * 132 ms), only stat them. Files this sync did not write are in the cache from an earlier
   * rescan. Called once the copy is ready for the command: handing it to the guest user
   * (guest-run.ts) moves every file's ctime, and a stat taken before would not match after,
   * so the rescan read the whole sync again (two 300 MB files: 0.5–0.7 s on each first run).
   */
  async recordWritten (copyDir: string, synced: SyncCopyResult): Promise<void> {
    if (synced.written.length === 0) return
    const { cache } = await this.statCache(copyDir + '.statcache', 0)
    await cache.beginScanWith(copyDir, synced.written)
  }

  /**
   * Something wrote into the copy since its last run (a process a command left behind, most
   * likely) and the sync has put the submitter's files back: the submitter hears of it, as a
   * command of theirs may be what did it, and this machine's owner finds it in the log.
   */
  private async tellRepaired (copyDir: string, repaired: NonNullable<SyncCopyResult['repaired']>, send: Send): Promise<void> {
    const what = 'paths' in repaired
      ? `${repaired.paths.length} ${repaired.paths.length === 1 ? 'path' : 'paths'} (${repaired.paths.slice(0, 3).map((p) => JSON.stringify(p)).join(', ')}${repaired.paths.length > 3 ? ', …' : ''})`
      : `the whole copy (${repaired.whole})`
    log.warn(`the copy ${copyDir} had changed since its last run: put back ${what}`)
    await send({ t: 'notice', text: clipText(`the workspace copy on this member had changed since the last run (a process left running?): put back ${what}`) }).catch(() => {})
  }

  /** Files, links and directories of a copy's tree (computed once per tree). */
  private entriesOf (tree: DirNode): number {
    const s = treeStats(tree, this.copyStats)
    return s.files + s.links + s.dirs
  }

  /**
   * Whether the copy still holds exactly the tree it was synced to, by the copy check made
   * strict (what a stat-cache rescan would trust, on both threads): most commands change
   * nothing, and the check costs half the outputs scan it then stands for (10,000 files:
   * 43–52 against 92 ms). When it is so, the copy's tree and stat cache are kept as the scan
   * would have left them. Whatever the check cannot vouch for goes to the full scan.
   */
  private async unchangedSince (copyDir: string, synced: SyncCopyResult, cache: StatCache): Promise<boolean> {
    let check: CopyCheck
    // Watched from this check on: the next check before a sync need not walk the copy again
    // when nothing at all happens in it meanwhile (checkCopy).
    const watch = await this.watches?.tree(copyDir).begin(this.entriesOf(synced.tree))
    try {
      check = await checkCopy(copyDir, synced.tree, {
        statCache: cache, strict: true,
        ...(this.statWorker !== undefined ? { statWorker: this.statWorker } : {}),
        ...(watch !== undefined ? { watch } : {})
      })
    } catch {
      return false
    } finally {
      watch?.finish(false)
    }
    if (!('changed' in check) || check.changed.length > 0) return false
    this.rememberTree(copyDir, { rootHash: synced.rootHash, tree: synced.tree })
    this.saveSoon(cache)
    return true
  }

  /**
   * After the command: rescans the copy; when it changed, offers the new tree to the
   * submitter and waits until it has pulled it (or never started to, for
   * OUTPUTS_OPEN_TIMEOUT_MS). The offer carries the command's `exit`, so that a submitter
   * which fails to pull can still say how the command ended. `withBase`: the submitter has no
   * scan of its own (it re-attached): the tree it sent travels too. Resolves whether anything
   * was offered (false: the command changed nothing).
   */
  async offerOutputs (copyDir: string, synced: SyncCopyResult, to: { submitter: string, send: Send, exit: { code: number, signal?: string }, withBase?: boolean }): Promise<boolean> {
    const { submitter, send } = to
    const t0 = performance.now()
    // No racy margin: nothing else writes a copy, and the command has ended.
    const { cache, memo } = await this.statCache(copyDir + '.statcache', 0)
    if (await this.unchangedSince(copyDir, synced, cache)) {
      log.debug(`checked the copy ${copyDir} after the command in ${Math.round(performance.now() - t0)} ms: unchanged`)
      return false
    }
    let scan: Awaited<ReturnType<typeof scanWorkspace>>
    const left: string[] = []
    const threads = this.scanThreads()
    try {
      scan = await scanWorkspace(copyDir, {
        statCache: cache,
        memo,
        ...(threads.pool !== undefined ? { pool: threads.pool } : {}),
        ...(this.statWorker !== undefined ? { statWorker: this.statWorker } : {}),
        onWarning: (msg) => { left.push(msg.replace(/^skipped /, '')) },
        // What the command made unreadable (or a fifo…) is not what it deleted: as it was.
        keep: (rel) => nodeAt(synced.tree, rel)
      })
    } catch (err) {
      // What the command left stays in the copy, which now matches no tree: unless the next
      // sync starts from scratch it finds "nothing changed" and every later run fails here.
      this.copyTrees.delete(copyDir)
      forgetBase(copyDir)
      throw err
    } finally {
      threads.release()
    }
    this.saveSoon(cache)
    for (const msg of left) await send({ t: 'notice', text: clipText(`did not bring back ${msg}`) })
    log.debug(`rescanned the copy ${copyDir} in ${Math.round(performance.now() - t0)} ms (read ${scan.read.files} files, ${scan.read.bytes} bytes)`)
    const { rootHash, blobs } = scan
    try {
      this.rememberTree(copyDir, { rootHash, tree: scan.tree })
      // Unchanged: syncCopy already recorded this root, and its records are in the store.
      if (Buffer.compare(Buffer.from(rootHash), Buffer.from(synced.rootHash)) === 0) return false
      await saveBase(copyDir, rootHash, blobs, this.store)
      const base = to.withBase === true ? encodeTree(synced.tree) : undefined
      const served = base === undefined ? blobs : new Map([...base.blobs, ...blobs])
      const session = this.registry.add({ rootHash, blobs: served, sources: { get: (hex) => scan.sources.get(hex) }, peer: submitter })
      try {
        const pulled = this.registry.pulled(session, OUTPUTS_OPEN_TIMEOUT_MS)
        const exit = { code: to.exit.code, ...(to.exit.signal !== undefined ? { signal: to.exit.signal } : {}) }
        await send({ t: 'outputs', root: rootHash, session, exit, ...(base !== undefined ? { base: base.rootHash } : {}) })
        await pulled
        return true
      } finally {
        this.registry.remove(session)
      }
    } finally {
      // What was left out is still on disk, unlike in the tree: the next sync starts afresh.
      if (left.length > 0) {
        this.copyTrees.delete(copyDir)
        forgetBase(copyDir)
      }
    }
  }
}
