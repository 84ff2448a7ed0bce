/**
 * The chunk store of an executor (`$VGRID_HOME/store/`): blobs (chunks, directory records,
 * chunk lists; the store does not care which) named by their SHA-256, kept so that data a
 * machine already has never travels again (DESIGN §4).
 *
 * - **Pack files** (pack.ts): blobs are appended to ~64 MiB packs with an append-only index,
 *   because one file per chunk costs ~4.8 s/GiB and packs ~0.3 s/GiB (NOTES-sync.md). At open,
 *   every index is loaded into one Map (~150 bytes a blob: ~25 MiB for a full 10 GiB store).
 * - **Writes are batched and pipelined**: `put` copies the blob into a 1 MiB buffer and returns;
 *   a full buffer is written with one call while the next one fills, so the caller's hashing
 *   and receiving overlap our I/O. `put` waits while more than MAX_QUEUED_BATCHES are queued (a
 *   caller that does not await its puts gets no back-pressure). Blobs still in a buffer are
 *   readable. `flush()` waits until everything is on disk (page cache;
 *   nothing is fsynced, see pack.ts) and reports a write that failed since the last flush.
 * - **Never a wrong byte**: the caller verifies hashes before `put`; `get` hashes what it read
 *   again (SHA-256 runs at 1.3-1.6 GB/s) and a mismatch is a miss: the entry is dropped and a warning logged.
 * - **Capped, least recently used evicted by whole pack**: each pack has a last-used time (put,
 *   get, touch), saved as the data file's mtime at most once a minute. When the store passes
 *   its cap, the least recently used sealed packs are deleted; the pack being written never is
 *   (so a cap below one pack is passed by that pack). A pack with one hot blob keeps its cold
 *   ones alive (a future compaction could rewrite hot blobs into a new pack).
 * - **The cap follows the disk**: never more than what the store holds plus what its disk has
 *   free, less a margin (capOnDisk). The disk is looked at again as the store fills (at most
 *   once a DISK_CHECK_INTERVAL_MS, sooner when the writes since could have used up what was
 *   free) and after a write fails, so a disk that fills up (the store itself, the workspace
 *   copies beside it, anything else) trims the store without a restart. A 10 GiB default cap
 *   on a 50 MB disk once filled the disk and stayed there.
 * - **One store per directory**: `store.lock` (store-lock.ts). Methods are safe to call
 *   concurrently without a mutex: all bookkeeping (index, offsets, batches) is synchronous, and
 *   the only asynchronous steps, batch writes, rollovers and evictions, run one after another
 *   on a promise chain.
 */
import crypto from 'node:crypto'
import fsp from 'node:fs/promises'
import { VgridError } from '../common/errors.js'
import { createLogger, type Logger } from '../common/log.js'
import { encodeIndex, loadPack, MAX_PACK_BYTES, Pack, PACK_NAME_RE, ReadHandles } from './pack.js'
import { StoreLock } from './store-lock.js'
import { HASH_BYTES, MAX_BLOB_BYTES } from './types.js'
import { blobKey } from './hash.js'

const MiB = 1024 ** 2
const GiB = 1024 ** 3

/** Default cap of a store (`capBytes`): what an executor gives to data it may need again. */
export const DEFAULT_STORE_CAP_BYTES = 10 * GiB
/** A pack is sealed and a new one begun when a blob would take it past this. */
export const DEFAULT_PACK_BYTES = 64 * MiB
/** Smallest pack size accepted (tests use small packs to exercise rollover and eviction). */
export const MIN_PACK_BYTES = 4 * 1024
/** Blobs are gathered in memory and written with one call once this much is waiting. */
export const WRITE_BATCH_BYTES = 1 * MiB
/** Full batches waiting for the disk before `put` waits: bounds buffered blobs to ~5 MiB. */
export const MAX_QUEUED_BATCHES = 4
/** A pack's last use is written to disk at most this often (it only orders eviction). */
export const USAGE_SAVE_INTERVAL_MS = 60_000
/** Pack files kept open for reading at once. */
export const MAX_OPEN_PACKS = 64
/**
 * Blobs found lost or corrupt whose loss is remembered (~100 bytes each), so that a run which
 * has to fetch one again can be told why; past this the oldest are forgotten.
 */
export const MAX_LOST_BLOBS_REMEMBERED = 10_000
/** The disk is looked at again at least this often while the store writes. */
export const DISK_CHECK_INTERVAL_MS = 1_000
/** Share of its disk the store leaves free (DISK_MARGIN_SHARE of its size, within the bounds below). */
export const DISK_MARGIN_SHARE = 0.05
export const MIN_DISK_MARGIN_BYTES = 1 * MiB
export const MAX_DISK_MARGIN_BYTES = 1 * GiB

/** What statfs says of the disk a directory is on. */
export interface DiskSpace {
  /** Bytes this user may still write (statfs bavail). */
  freeBytes: number
  totalBytes: number
}

export type DiskProbe = (dir: string) => Promise<DiskSpace>

export async function statDisk (dir: string): Promise<DiskSpace> {
  const s = await fsp.statfs(dir)
  return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize }
}

/** What the store leaves free on a disk of `totalBytes`: other programs, and the workspace copies, need some. */
export function diskMarginBytes (totalBytes: number): number {
  return Math.min(MAX_DISK_MARGIN_BYTES, Math.max(MIN_DISK_MARGIN_BYTES, Math.floor(totalBytes * DISK_MARGIN_SHARE)))
}

/**
 * The cap that holds on this disk: the owner's `capBytes`, but never more than the store holds
 * now plus what is free, less the margin (what it holds it may keep or give back; what is free
 * it may take, but not all of it).
 */
export function capOnDisk (capBytes: number, storeBytes: number, disk: DiskSpace): number {
  return Math.max(0, Math.min(capBytes, storeBytes + disk.freeBytes - diskMarginBytes(disk.totalBytes)))
}

/**
 * Bytes that new data could take on the store's disk if the store gave back everything it
 * holds: what a workspace sync there may write (chunks and the copy's files), margin kept.
 */
export function roomOnDisk (storeBytes: number, disk: DiskSpace): number {
  return Math.max(0, storeBytes + disk.freeBytes - diskMarginBytes(disk.totalBytes))
}

export interface StoreStats {
  /** Blobs indexed. */
  blobs: number
  /** Bytes of the packs and their indexes, including blobs not yet written. */
  bytes: number
  packs: number
  /** The cap in force: the owner's, lowered to what the disk allows (capOnDisk). */
  capBytes: number
}

export interface StoreOptions {
  /** Total size past which least recently used packs are deleted; DEFAULT_STORE_CAP_BYTES. */
  capBytes?: number
  /** Size at which a pack is sealed; DEFAULT_PACK_BYTES. */
  packBytes?: number
  log?: Logger
  /** Milliseconds since the epoch; tests inject a clock to order packs by last use. */
  now?: () => number
  /** How full the store's disk is; statDisk. Tests inject a small disk. */
  disk?: DiskProbe
}

interface Batch {
  pack: Pack
  /** Offset of buf[0] in the pack. */
  start: number
  buf: Buffer
  used: number
  keys: string[]
  locs: Loc[]
  /** Settles (never rejects) when the batch is written or dropped. */
  done?: Promise<void>
}

interface Loc {
  pack: Pack
  offset: number
  length: number
  /** Set while the blob is only in memory. */
  batch?: Batch
}

export class ChunkStore {
  private readonly index = new Map<string, Loc>()
  /** Blobs this store had and lost since it opened (a torn pack, a corrupt copy): why, by key. */
  private readonly lost = new Map<string, string>()
  private readonly packs = new Map<number, Pack>()
  private readonly handles = new ReadHandles(MAX_OPEN_PACKS)
  private active!: Pack
  private nextPackId = 1
  private batch?: Batch
  /** Batches queued or being written, oldest first. */
  private readonly queued: Batch[] = []
  /** Batch buffers to reuse: fresh memory costs page faults on every first touch. */
  private readonly spares: Buffer[] = []
  /** Tail of the chain of writes: each batch, rollover and eviction runs after the previous. */
  private writes: Promise<void> = Promise.resolve()
  private writeError?: unknown
  private closed = false
  private closing?: Promise<void>
  /** The cap in force (capOnDisk), and what the disk said when it was last looked at. */
  private cap: number
  private lastDisk?: DiskSpace
  private lastDiskCheck = -Infinity
  /** Bytes written since the disk was last looked at. */
  private writtenSinceCheck = 0
  private readonly disk: DiskProbe

  private constructor (
    readonly dir: string,
    private readonly lock: StoreLock,
    private readonly capBytes: number,
    private readonly packBytes: number,
    private readonly log: Logger,
    private readonly now: () => number,
    disk: DiskProbe
  ) {
    this.cap = capBytes
    this.disk = disk
  }

  static async open (dir: string, opts: StoreOptions = {}): Promise<ChunkStore> {
    const capBytes = opts.capBytes ?? DEFAULT_STORE_CAP_BYTES
    const packBytes = opts.packBytes ?? DEFAULT_PACK_BYTES
    if (!Number.isSafeInteger(capBytes) || capBytes < 0) {
      throw new VgridError('ERR_BAD_ARGUMENT', `the store cap must be a whole number of bytes ≥ 0, not ${capBytes}`)
    }
    if (!Number.isSafeInteger(packBytes) || packBytes < MIN_PACK_BYTES || packBytes > MAX_PACK_BYTES) {
      throw new VgridError('ERR_BAD_ARGUMENT', `the pack size must be between ${MIN_PACK_BYTES} and ${MAX_PACK_BYTES} bytes, not ${packBytes}`)
    }
    await fsp.mkdir(dir, { recursive: true })
    const lock = await StoreLock.acquire(dir)
    const store = new ChunkStore(dir, lock, capBytes, packBytes, opts.log ?? createLogger('store'), opts.now ?? Date.now, opts.disk ?? statDisk)
    try {
      await store.load()
    } catch (err) {
      await lock.release()
      throw err
    }
    return store
  }

  private async load (): Promise<void> {
    const ids = new Set<number>()
    for (const name of await fsp.readdir(this.dir)) {
      const m = PACK_NAME_RE.exec(name)
      if (m !== null) ids.add(Number(m[1]))
    }
    const sorted = [...ids].sort((a, b) => a - b)
    let last: Pack | undefined
    for (const id of sorted) {
      let loaded: Awaited<ReturnType<typeof loadPack>>
      try {
        loaded = await loadPack(this.dir, id, this.handles, MAX_BLOB_BYTES, this.log)
      } catch (err) {
        // something odd under a pack's name (a directory, no permission) costs that pack only
        this.log.warn(`skipping pack ${id} of ${this.dir}`, err)
        continue
      }
      if (loaded === undefined) continue
      const { pack, entries, repair } = loaded
      if (repair !== undefined) {
        const why = `pack ${id} had a torn tail: ${repair.dataBytes} bytes were cut when the agent started`
        for (const key of repair.lostKeys) this.noteLost(key, why)
      }
      // ascending order: a blob stored again (after its copy was found corrupt) takes the newer copy
      for (const e of entries) {
        this.index.set(e.key, { pack, offset: e.offset, length: e.length })
        pack.keys.push(e.key)
      }
      this.packs.set(id, pack)
      last = pack
    }
    this.nextPackId = (sorted[sorted.length - 1] ?? 0) + 1
    // the newest pack takes appends again if it has room (its torn tail was cut at load)
    this.active = last !== undefined && last.end < this.packBytes ? last : this.newPack()
    await this.checkDisk(true)
    await this.evict()
    this.log.debug(`opened ${this.dir}: ${this.index.size} blobs in ${this.packs.size} packs`)
  }

  has (hash: Uint8Array): boolean {
    return this.index.has(keyOf(hash))
  }

  /** has(), by a key the caller made already (blobKey of a whole hash). */
  hasKey (key: string): boolean {
    return this.index.has(key)
  }

  /** The blob, verified against its hash; undefined when it is not here (or was found corrupt). */
  async get (hash: Uint8Array): Promise<Uint8Array | undefined> {
    this.checkOpen()
    const key = keyOf(hash)
    const loc = this.index.get(key)
    if (loc === undefined) return undefined
    this.used(loc.pack)
    let data: Buffer | undefined
    let why = 'short read'
    if (loc.batch !== undefined) {
      const from = loc.offset - loc.batch.start
      data = Buffer.from(loc.batch.buf.subarray(from, from + loc.length))
    } else {
      try {
        data = await loc.pack.read(loc.offset, loc.length)
      } catch (err) {
        why = (err as Error).message
      }
      // evicted while we read: a plain miss
      if (data === undefined && loc.pack.removed) return undefined
    }
    if (data !== undefined) {
      if (crypto.createHash('sha256').update(data).digest().equals(hash)) return data
      why = 'its bytes do not match its hash'
    }
    this.log.warn(`dropping blob ${hex(key)} of pack ${loc.pack.id}: ${why}; it is fetched again`)
    if (this.index.get(key) === loc) {
      this.index.delete(key)
      this.noteLost(key, `its copy in pack ${loc.pack.id} was corrupt (${why})`)
    }
    return undefined
  }

  /**
   * Why the store no longer has a blob it once held (a torn pack cut at open, a copy that
   * failed its hash), when it lost it since it opened and has not been given it again.
   */
  lostWhy (hash: Uint8Array): string | undefined {
    return this.lost.get(keyOf(hash))
  }

  private noteLost (key: string, why: string): void {
    this.lost.delete(key)
    // Map iteration is in insertion order: the first entry is the oldest
    if (this.lost.size >= MAX_LOST_BLOBS_REMEMBERED) this.lost.delete(this.lost.keys().next().value!)
    this.lost.set(key, why)
  }

  /** Stores a blob whose hash the caller has verified; nothing happens if it is already here. */
  async put (hash: Uint8Array, data: Uint8Array): Promise<void> {
    this.checkOpen()
    const key = keyOf(hash)
    if (!(data instanceof Uint8Array) || data.byteLength > MAX_BLOB_BYTES) {
      throw new VgridError('ERR_BAD_ARGUMENT', `a blob must be bytes, at most ${MAX_BLOB_BYTES} of them`)
    }
    const hit = this.index.get(key)
    if (hit !== undefined) {
      this.used(hit.pack)
      return
    }
    this.lost.delete(key)
    const len = data.byteLength
    if (this.active.failed || (this.active.end + len > this.packBytes && this.active.hasData)) this.rollOver()
    if (this.batch !== undefined && this.batch.used + len > this.batch.buf.length) this.queueBatch()
    const pack = this.active
    const b = this.batch ??= this.newBatch(len)
    b.buf.set(data, b.used)
    const loc: Loc = { pack, offset: pack.end, length: len, batch: b }
    b.keys.push(key)
    b.locs.push(loc)
    b.used += len
    pack.end += len
    pack.entries++
    pack.keys.push(key)
    this.index.set(key, loc)
    this.used(pack)
    if (b.used >= WRITE_BATCH_BYTES) this.queueBatch()
    // Every caller waits until the disk has caught up, not only the one that found the queue
    // long: many callers at once would otherwise queue batches without bound.
    while (this.queued.length > MAX_QUEUED_BATCHES) await this.queued[0]!.done
  }

  /** Marks a blob as used now (it was needed again) so eviction keeps it. */
  touch (hash: Uint8Array): void {
    const loc = this.index.get(keyOf(hash))
    if (loc !== undefined) this.used(loc.pack)
  }

  /** Waits until every blob put so far is written; throws if a write failed since the last flush. */
  async flush (): Promise<void> {
    this.queueBatch()
    await this.writes
    this.throwWriteError()
  }

  private throwWriteError (): void {
    const err = this.writeError
    if (err === undefined) return
    this.writeError = undefined
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
      throw new VgridError('ERR_NO_SPACE', `the disk of the chunk store in ${this.dir} is full`, 'free space there, or move VGRID_HOME to a larger disk')
    }
    throw new VgridError('ERR_INTERNAL', `could not write to the chunk store in ${this.dir}: ${(err as Error).message}`)
  }

  stats (): StoreStats {
    let bytes = 0
    let packs = 0
    for (const p of this.packs.values()) {
      if (!p.hasData) continue
      bytes += p.bytes
      packs++
    }
    return { blobs: this.index.size, bytes, packs, capBytes: this.cap }
  }

  /**
   * Bytes of new data a workspace sync could write on this disk now (the store giving back
   * all it holds, the margin kept), as last seen: what this member advertises. Undefined
   * before the disk could be read.
   */
  room (): number | undefined {
    return this.lastDisk === undefined ? undefined : roomOnDisk(this.stats().bytes, this.lastDisk)
  }

  /** room(), the disk looked at now. */
  async roomNow (): Promise<number | undefined> {
    await this.checkDisk(true)
    return this.room()
  }

  /**
   * Looks at the disk again when it is due (or `force`) and lowers or raises the cap in force
   * to match. A disk that cannot be read leaves the cap as it was.
   */
  private async checkDisk (force = false): Promise<void> {
    const now = this.now()
    const due = force || now - this.lastDiskCheck >= DISK_CHECK_INTERVAL_MS ||
      // what was written since may have used up what was free
      (this.lastDisk !== undefined && this.writtenSinceCheck * 2 >= this.lastDisk.freeBytes - diskMarginBytes(this.lastDisk.totalBytes))
    if (!due) return
    this.lastDiskCheck = now
    this.writtenSinceCheck = 0
    try {
      this.lastDisk = await this.disk(this.dir)
    } catch (err) {
      this.log.debug(`could not read the free space of ${this.dir}`, err)
      return
    }
    const cap = capOnDisk(this.capBytes, this.stats().bytes, this.lastDisk)
    if (cap < this.capBytes && cap !== this.cap) this.log.debug(`the disk of ${this.dir} has ${this.lastDisk.freeBytes} bytes free: cap ${cap} bytes`)
    this.cap = cap
  }

  /** Writes what is buffered, saves last-use times and releases the lock; throws as flush does. */
  async close (): Promise<void> {
    // a second call waits for the first
    this.closing ??= this.shutDown()
    await this.closing
  }

  private async shutDown (): Promise<void> {
    this.closed = true
    try {
      this.queueBatch()
      await this.writes
      await this.active.finishWriting()
      await Promise.all([...this.packs.values()].map(async (p) => {
        if (p.lastUsed > p.usageSavedAt) await p.saveUsage()
        p.retire()
      }))
    } finally {
      await this.lock.release()
    }
    this.throwWriteError()
  }

  private checkOpen (): void {
    if (this.closed) throw new VgridError('ERR_INTERNAL', `the chunk store in ${this.dir} is closed`)
  }

  private used (pack: Pack): void {
    pack.lastUsed = this.now()
    if (pack.lastUsed - pack.usageSavedAt >= USAGE_SAVE_INTERVAL_MS) void pack.saveUsage()
  }

  private newPack (): Pack {
    const pack = new Pack(this.dir, this.nextPackId++, this.handles, this.now())
    this.packs.set(pack.id, pack)
    return pack
  }

  private newBatch (minBytes: number): Batch {
    const buf = minBytes <= WRITE_BATCH_BYTES ? this.spares.pop() ?? Buffer.allocUnsafe(WRITE_BATCH_BYTES) : Buffer.allocUnsafe(minBytes)
    return { pack: this.active, start: this.active.end, buf, used: 0, keys: [], locs: [] }
  }

  /** Seals the active pack: its last batch is queued, then its write handles are closed. */
  private rollOver (): void {
    this.queueBatch()
    const old = this.active
    this.active = this.newPack()
    this.chain(async () => { await old.finishWriting() })
  }

  private queueBatch (): void {
    const b = this.batch
    if (b === undefined) return
    this.batch = undefined
    b.pack.pendingBatches++
    this.queued.push(b)
    b.done = this.chain(async () => { await this.writeBatch(b) })
  }

  private chain (step: () => Promise<void>): Promise<void> {
    const next = this.writes.then(step).catch((err) => { this.log.error('chunk store write chain', err) })
    this.writes = next
    return next
  }

  private async writeBatch (b: Batch): Promise<void> {
    const { pack } = b
    try {
      if (pack.failed) throw new Error(`pack ${pack.id} failed earlier`)
      const offsets = b.locs.map((l) => l.offset)
      const lengths = b.locs.map((l) => l.length)
      await pack.append(b.buf.subarray(0, b.used), b.start, encodeIndex(b.keys, offsets, lengths))
      for (const loc of b.locs) loc.batch = undefined
      this.writtenSinceCheck += b.used
    } catch (err) {
      // what was written of this batch is a torn tail for the next open to cut; the blobs are
      // gone from the index, so they are fetched again
      if (!pack.failed) {
        this.log.warn(`could not write pack ${pack.id}`, err)
        this.writeError ??= err
      }
      pack.failed = true
      // a full disk: the cap comes down now, and what the store holds past it is given back
      this.lastDiskCheck = -Infinity
      // batches of a pack are written in order, so this one and any after it form its tail
      pack.end -= b.used
      pack.entries -= b.keys.length
      for (let i = 0; i < b.keys.length; i++) {
        if (this.index.get(b.keys[i]!) === b.locs[i]) this.index.delete(b.keys[i]!)
      }
    } finally {
      pack.pendingBatches--
      this.queued.shift()
      if (b.buf.length === WRITE_BATCH_BYTES && this.spares.length <= MAX_QUEUED_BATCHES) this.spares.push(b.buf)
    }
    await this.evict()
  }

  /** Deletes least recently used sealed packs until the store is within its cap. */
  private async evict (): Promise<void> {
    await this.checkDisk()
    let total = this.stats().bytes
    if (total <= this.cap) return
    const candidates = [...this.packs.values()]
      .filter((p) => p !== this.active && p.pendingBatches === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed || a.id - b.id)
    for (const pack of candidates) {
      if (total <= this.cap) break
      total -= pack.hasData ? pack.bytes : 0
      this.packs.delete(pack.id)
      for (const key of pack.keys) {
        if (this.index.get(key)?.pack === pack) this.index.delete(key)
      }
      this.log.debug(`evicting pack ${pack.id} (${pack.bytes} bytes, last used ${new Date(pack.lastUsed).toISOString()})`)
      try {
        await pack.remove()
      } catch (err) {
        this.log.warn(`could not delete pack ${pack.id}`, err)
      }
    }
  }
}

/** A blob's hash as a Map key (the store's index, and where copies hold chunks: copy-chunks.ts). */
export function keyOf (hash: Uint8Array): string {
  if (!(hash instanceof Uint8Array) || hash.byteLength !== HASH_BYTES) {
    throw new VgridError('ERR_BAD_ARGUMENT', `a blob hash is ${HASH_BYTES} bytes`)
  }
  return blobKey(hash)
}

function hex (key: string): string {
  return Buffer.from(key, 'latin1').toString('hex')
}
