/**
 * The pulling side of `/vgrid/sync/1.0.0`. `fetch(hash)` calls made in the same tick go out
 * as one `want`; at most PULL_WINDOW_BYTES are asked for and not yet received (or, for a
 * blob fetched with `hold`, not yet released by its consumer), so a fast provider cannot
 * flood memory, and the stream stays full (the provider answers in order, with
 * backpressure). The wants and blobs go over the sync stream, or over data plane
 * connections when the provider grants them (plane/), spread over them in turn. Every blob
 * is hashed on receipt, here or by the data plane thread that received it; a mismatch is
 * refused and asked for again, then fails with ERR_CHUNK_HASH_MISMATCH.
 */
import { createHash } from 'node:crypto'
import type { FrameChannel } from '../common/channel.js'
import { VgridError, fromWire } from '../common/errors.js'
import { Fifo } from '../common/fifo.js'
import {
  parseSyncReply, type SyncReply, SYNC_PROTOCOL_VERSION, MAX_WANT_HASHES, PULL_WINDOW_BYTES, HASH_MISMATCH_RETRIES
} from '../protocol/sync.js'
import { CHUNK_MAX_BYTES, type Hash } from './types.js'
import { blobKey, hexOf } from './hash.js'
import type { PlaneGrant } from './plane/server.js'
import type { PulledItem } from './plane/pull-worker.js'

import { createLogger } from '../common/log.js'

/**
 * A channel wants go out on and blobs come back on; `verified`: its blobs were checked against
 * their hashes already; `free`: gives a blob's buffer back to the thread it came from (whether
 * it went).
 */
export interface Lane { channel: FrameChannel<unknown>, verified: boolean, free?: (data: Uint8Array) => boolean }

const log = createLogger('sync')

/** The next reply on the stream during the opening; an error reply is thrown. */
async function nextReply (stream: FrameChannel): Promise<Exclude<SyncReply, { t: 'error' }>> {
  const raw = await stream.recv()
  if (raw === undefined) throw new VgridError('ERR_PEER_LOST', 'the sync stream closed before it opened')
  const reply = parseSyncReply(raw)
  if (reply.t === 'error') throw fromWire(reply.error)
  return reply
}

interface Pending {
  hash: Hash
  size: number
  tries: number
  /** Counted in the window until release(), not only until it arrives. */
  hold: boolean
  waiters: Array<{ resolve: (d: Uint8Array) => void, reject: (e: Error) => void }>
}

export interface FetchStats {
  blobs: number
  bytes: number
  /** Blobs whose buffers went back to the thread that received them (giveBack). */
  givenBack: number
}

export class BlobFetcher {
  /** Asked for, answer not yet received, in the order asked. */
  private readonly inflight = new Map<string, Pending>()
  /** Not yet asked for: held blobs, and the others, which go first. */
  private readonly queue = new Fifo<Pending>()
  private readonly urgent = new Fifo<Pending>()
  /** Every blob not yet settled, by blobKey. */
  private readonly byKey = new Map<string, Pending>()
  private inflightBytes = 0
  /** Blobs fetched with `hold` that arrived and are not yet released. */
  private heldBytes = 0
  private flushScheduled = false
  private nextLane = 0
  private failed: Error | undefined
  readonly stats: FetchStats = { blobs: 0, bytes: 0, givenBack: 0 }
  /** Blobs handed to one caller alone, by the lane that can take their buffers back. */
  private readonly lentBy = new WeakMap<Uint8Array, Lane>()

  /**
   * `stream` opened the session and holds it open; `lanes` carry the wants and blobs: the
   * stream itself, or data plane connections.
   */
  private constructor (private readonly stream: FrameChannel, private readonly lanes: Lane[], readonly root: Hash) {}

  /** Data plane connections the blobs come over (0: over the sync stream). */
  get planeConnections (): number {
    return this.lanes[0]!.channel === this.stream ? 0 : this.lanes.length
  }

  /**
   * Opens the session; the provider answers with the exported root hash. With `dialPlane`,
   * asks for the data plane and pulls over the connections it opens when the provider grants
   * one; otherwise (or when none opens: a firewall) over the stream.
   */
  static async open (stream: FrameChannel, session: string, dialPlane?: (grant: PlaneGrant) => Promise<Lane[]>): Promise<BlobFetcher> {
    await stream.send({ t: 'open', v: SYNC_PROTOCOL_VERSION, session })
    const reply = await nextReply(stream)
    if (reply.t !== 'ok') throw new VgridError('ERR_BAD_MESSAGE', 'expected ok to open a sync session')
    let lanes: Lane[] = []
    if (dialPlane !== undefined) {
      await stream.send({ t: 'plane' })
      const granted = await nextReply(stream)
      if (granted.t !== 'plane') throw new VgridError('ERR_BAD_MESSAGE', 'expected the answer to plane')
      if (granted.grant !== undefined) {
        try {
          lanes = await dialPlane(granted.grant)
        } catch (err) {
          log.debug(`no data plane (${(err as Error).message}): pulling over the sync stream`)
        }
      }
    }
    if (lanes.length === 0) lanes = [{ channel: stream, verified: false }]
    const f = new BlobFetcher(stream, lanes, reply.root)
    for (const lane of lanes) void f.readLoop(lane)
    return f
  }

  /** The blob's verified bytes. `sizeHint` (a chunk's size) keeps the window accurate. */
  async fetch (hash: Hash, sizeHint = CHUNK_MAX_BYTES): Promise<Uint8Array> {
    const { data, release } = await this.request(hash, sizeHint, false)
    // it may have been asked for held by another caller first: this one does not keep it
    release()
    return data
  }

  /**
   * Like fetch, but the blob's size stays in the window until `release()` is called: the
   * consumer (a file being written) sets the pace, not the network, so memory holds at most
   * a window of blobs however far behind the consumer falls. For a chunk: `size` must be
   * exact, and a blob of another size is refused.
   */
  fetchHeld (hash: Hash, size: number): Promise<{ data: Uint8Array, release: () => void }> {
    return this.request(hash, size, true)
  }

  /**
   * Not an async function, nor is fetchHeld: a first sync asks for every chunk it lacks at
   * once, and two suspended async frames per chunk (a generator, its context and promises)
   * were ~37,000 objects and ~10 MB of the executor's heap at its peak (a heap snapshot of
   * the 1 GiB tree's sync).
   */
  private request (hash: Hash, sizeHint: number, hold: boolean): Promise<{ data: Uint8Array, release: () => void }> {
    if (this.failed !== undefined) return Promise.reject(this.failed)
    const key = blobKey(hash)
    let p = this.byKey.get(key)
    if (p === undefined) {
      p = { hash, size: sizeHint, tries: 0, hold, waiters: [] }
      this.byKey.set(key, p)
      if (hold) this.queue.push(p)
      else this.urgent.push(p)
      this.scheduleFlush()
    } else if (!hold && p.hold) {
      // a caller waits on it now: it may not wait behind the window
      if (this.queue.remove(p)) {
        this.urgent.push(p)
        this.scheduleFlush()
      }
    }
    const pending = p
    return new Promise((resolve, reject) => {
      pending.waiters.push({
        resolve: (data) => {
          // only the first of several callers of a held blob owns its window space
          let held = pending.hold
          if (held) pending.hold = false
          resolve({
            data,
            release: () => {
              if (!held) return
              held = false
              this.heldBytes -= pending.size
              this.flush()
            }
          })
        },
        reject
      })
    })
  }

  /**
   * Tells the fetcher that the one caller a blob went to is done with its bytes: its buffer
   * goes back to the data plane thread that received it, which frees it (pull-worker.ts).
   * Not for a blob that anything may still read: the buffer is detached.
   */
  giveBack (data: Uint8Array): void {
    const lane = this.lentBy.get(data)
    if (lane === undefined) return
    this.lentBy.delete(data)
    if (lane.free?.(data) === true) this.stats.givenBack++
  }

  close (): void {
    this.fail(new VgridError('ERR_PEER_LOST', 'the sync session was closed'))
    for (const lane of this.lanes) void lane.channel.close().catch(() => {})
    if (this.planeConnections > 0) void this.stream.close().catch(() => {})
  }

  private scheduleFlush (): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    queueMicrotask(() => { this.flushScheduled = false; this.flush() })
  }

  private flush (): void {
    // Refill in large wants: one want per blob received would cost the provider's reads
    // nothing but each want is a frame, a cipher and a write on both sides.
    const used = (): number => this.inflightBytes + this.heldBytes
    if (this.inflight.size > 0 && used() > PULL_WINDOW_BYTES / 2) return
    // A held blob waits while its consumers are behind; any other blob (a record, a chunk
    // the store lost) goes ahead of them, as a consumer may be waiting on it to catch up.
    const next = (first: boolean): Pending | undefined => {
      const fits = used() < PULL_WINDOW_BYTES || (first && this.inflight.size === 0)
      if (this.urgent.length > 0) return fits || this.inflight.size === 0 ? this.urgent.shift() : undefined
      return fits && this.heldBytes < PULL_WINDOW_BYTES ? this.queue.shift() : undefined
    }
    while (this.failed === undefined) {
      const batch: Pending[] = []
      for (let p = next(true); p !== undefined; p = batch.length < MAX_WANT_HASHES ? next(false) : undefined) {
        batch.push(p)
        this.inflight.set(blobKey(p.hash), p)
        this.inflightBytes += p.size
      }
      if (batch.length === 0) return
      const hashes = Buffer.concat(batch.map((p) => p.hash))
      const lane = this.lanes[this.nextLane++ % this.lanes.length]!
      lane.channel.send({ t: 'want', hashes }).catch((err) => { this.fail(err) })
    }
  }

  private async readLoop (lane: Lane): Promise<void> {
    try {
      for (;;) {
        const raw = await lane.channel.recv()
        if (raw === undefined) {
          if (this.inflight.size > 0 || this.queue.length > 0 || this.urgent.length > 0) throw new VgridError('ERR_PEER_LOST', 'the sync stream closed with blobs outstanding')
          return
        }
        // a lane that verified its blobs (a data plane thread) told a failed one as `bad`
        const reply = lane.verified ? raw as PulledItem : parseSyncReply(raw)
        if (reply.t === 'error') throw fromWire(reply.error)
        if (reply.t === 'ok' || reply.t === 'plane') throw new VgridError('ERR_BAD_MESSAGE', `unexpected ${reply.t}`)
        const key = blobKey(reply.h)
        const p = this.inflight.get(key)
        if (p === undefined) throw new VgridError('ERR_BAD_MESSAGE', 'the provider sent a blob that was not asked for')
        this.inflight.delete(key)
        this.inflightBytes -= p.size
        if (reply.t === 'missing') {
          this.settle(key, p, new VgridError('ERR_BAD_MESSAGE', `the provider no longer has blob ${hexOf(p.hash).slice(0, 16)}… (a file changed during the sync?)`, 'run the command again'))
        } else if (reply.t === 'bad' || (!lane.verified && !createHash('sha256').update(reply.d).digest().equals(reply.h))) {
          if (++p.tries > HASH_MISMATCH_RETRIES) {
            this.settle(key, p, new VgridError('ERR_CHUNK_HASH_MISMATCH', `blob ${hexOf(p.hash).slice(0, 16)}… arrived ${p.tries} times with bytes that do not match its hash`))
          } else {
            if (p.hold) this.queue.unshift(p)
            else this.urgent.unshift(p)
          }
        } else if (p.hold && reply.d.byteLength !== p.size) {
          // A held blob is a chunk of known size: a tree that understates its chunks would
          // otherwise get far more than a window of them asked for at once.
          this.settle(key, p, new VgridError('ERR_BAD_MESSAGE', `chunk ${hexOf(p.hash).slice(0, 16)}… has ${reply.d.byteLength} bytes, its tree says ${p.size}`))
        } else {
          this.stats.blobs++
          this.stats.bytes += reply.d.byteLength
          if (p.hold) this.heldBytes += p.size
          // several callers share the bytes: none of them may give them back
          if (lane.free !== undefined && p.waiters.length === 1) this.lentBy.set(reply.d, lane)
          this.settle(key, p, reply.d)
        }
        this.flush()
      }
    } catch (err) {
      this.fail(err as Error)
    }
  }

  private settle (key: string, p: Pending, result: Uint8Array | Error): void {
    this.byKey.delete(key)
    for (const w of p.waiters) {
      if (result instanceof Error) w.reject(result)
      else w.resolve(result)
    }
  }

  private fail (err: Error): void {
    if (this.failed !== undefined) return
    this.failed = err
    for (const [key, p] of this.byKey) this.settle(key, p, err)
    this.queue.clear()
    this.urgent.clear()
    this.inflight.clear()
  }
}

