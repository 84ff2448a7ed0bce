/**
 * The pulling side of `/vgrid/sync/1.0.0`. `fetch(hash)` calls made in the same tick go out
 * as one `want`; at most PULL_WINDOW_BYTES are asked for and not yet received, so a fast
 * provider cannot flood memory, and the stream stays full (the provider answers in order,
 * with backpressure). Every blob is hashed on receipt; a mismatch is refused and asked for
 * again, then fails with ERR_CHUNK_HASH_MISMATCH.
 */
import { createHash } from 'node:crypto'
import type { FrameChannel } from '../common/channel.js'
import { VgridError, fromWire } from '../common/errors.js'
import {
  parseSyncReply, SYNC_PROTOCOL_VERSION, MAX_WANT_HASHES, PULL_WINDOW_BYTES, HASH_MISMATCH_RETRIES
} from './protocol.js'
import { CHUNK_MAX_BYTES, type Hash } from './types.js'

interface Pending {
  hash: Hash
  size: number
  tries: number
  waiters: Array<{ resolve: (d: Uint8Array) => void, reject: (e: Error) => void }>
}

export interface FetchStats { blobs: number, bytes: number }

export class BlobFetcher {
  /** Asked for, answer not yet received, in the order asked. */
  private readonly inflight = new Map<string, Pending>()
  /** Not yet asked for. */
  private readonly queue: Pending[] = []
  private readonly byHex = new Map<string, Pending>()
  private inflightBytes = 0
  private flushScheduled = false
  private failed: Error | undefined
  readonly stats: FetchStats = { blobs: 0, bytes: 0 }

  private constructor (private readonly channel: FrameChannel, readonly root: Hash) {}

  /** Opens the session; the provider answers with the exported root hash. */
  static async open (channel: FrameChannel, session: string): Promise<BlobFetcher> {
    await channel.send({ t: 'open', v: SYNC_PROTOCOL_VERSION, session })
    const raw = await channel.recv()
    if (raw === undefined) throw new VgridError('ERR_PEER_LOST', 'the sync stream closed before it opened')
    const reply = parseSyncReply(raw)
    if (reply.t === 'error') throw fromWire(reply.error)
    if (reply.t !== 'ok') throw new VgridError('ERR_BAD_MESSAGE', 'expected ok to open a sync session')
    const f = new BlobFetcher(channel, reply.root)
    void f.readLoop()
    return f
  }

  /** The blob's verified bytes. `sizeHint` (a chunk's size) keeps the window accurate. */
  async fetch (hash: Hash, sizeHint = CHUNK_MAX_BYTES): Promise<Uint8Array> {
    if (this.failed !== undefined) throw this.failed
    const hex = Buffer.from(hash).toString('hex')
    return await new Promise<Uint8Array>((resolve, reject) => {
      let p = this.byHex.get(hex)
      if (p === undefined) {
        p = { hash, size: sizeHint, tries: 0, waiters: [] }
        this.byHex.set(hex, p)
        this.queue.push(p)
        this.scheduleFlush()
      }
      p.waiters.push({ resolve, reject })
    })
  }

  close (): void {
    this.fail(new VgridError('ERR_PEER_LOST', 'the sync session was closed'))
    void this.channel.close().catch(() => {})
  }

  private scheduleFlush (): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    queueMicrotask(() => { this.flushScheduled = false; this.flush() })
  }

  private flush (): void {
    // Refill in large wants: one want per blob received would cost the provider's reads
    // nothing but each want is a frame, a cipher and a write on both sides.
    if (this.inflight.size > 0 && this.inflightBytes > PULL_WINDOW_BYTES / 2) return
    while (this.queue.length > 0 && this.failed === undefined && (this.inflightBytes < PULL_WINDOW_BYTES || this.inflight.size === 0)) {
      const batch: Pending[] = []
      while (this.queue.length > 0 && batch.length < MAX_WANT_HASHES && (this.inflightBytes < PULL_WINDOW_BYTES || batch.length === 0)) {
        const p = this.queue.shift()!
        batch.push(p)
        this.inflight.set(Buffer.from(p.hash).toString('hex'), p)
        this.inflightBytes += p.size
      }
      const hashes = Buffer.concat(batch.map((p) => p.hash))
      this.channel.send({ t: 'want', hashes }).catch((err) => { this.fail(err) })
    }
  }

  private async readLoop (): Promise<void> {
    try {
      for (;;) {
        const raw = await this.channel.recv()
        if (raw === undefined) {
          if (this.inflight.size > 0 || this.queue.length > 0) throw new VgridError('ERR_PEER_LOST', 'the sync stream closed with blobs outstanding')
          return
        }
        const reply = parseSyncReply(raw)
        if (reply.t === 'error') throw fromWire(reply.error)
        if (reply.t === 'ok') throw new VgridError('ERR_BAD_MESSAGE', 'unexpected ok')
        const hex = Buffer.from(reply.h).toString('hex')
        const p = this.inflight.get(hex)
        if (p === undefined) throw new VgridError('ERR_BAD_MESSAGE', 'the provider sent a blob that was not asked for')
        this.inflight.delete(hex)
        this.inflightBytes -= p.size
        if (reply.t === 'missing') {
          this.settle(hex, p, new VgridError('ERR_BAD_MESSAGE', `the provider no longer has blob ${hex.slice(0, 16)}… (a file changed during the sync?)`, 'run the command again'))
        } else if (!createHash('sha256').update(reply.d).digest().equals(reply.h)) {
          if (++p.tries > HASH_MISMATCH_RETRIES) {
            this.settle(hex, p, new VgridError('ERR_CHUNK_HASH_MISMATCH', `blob ${hex.slice(0, 16)}… arrived ${p.tries} times with bytes that do not match its hash`))
          } else {
            this.queue.unshift(p)
          }
        } else {
          this.stats.blobs++
          this.stats.bytes += reply.d.byteLength
          this.settle(hex, p, reply.d)
        }
        this.flush()
      }
    } catch (err) {
      this.fail(err as Error)
    }
  }

  private settle (hex: string, p: Pending, result: Uint8Array | Error): void {
    this.byHex.delete(hex)
    for (const w of p.waiters) {
      if (result instanceof Error) w.reject(result)
      else w.resolve(result)
    }
  }

  private fail (err: Error): void {
    if (this.failed !== undefined) return
    this.failed = err
    for (const [hex, p] of this.byHex) this.settle(hex, p, err)
    this.queue.length = 0
    this.inflight.clear()
  }
}

