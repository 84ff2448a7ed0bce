/**
 * The thread behind a puller's data plane connections (pullers.ts): it dials, opens each
 * sealed frame, decodes it, checks every blob against its hash and hands the main thread
 * only verified bytes (moved, not copied), so the cipher, the hashing and the socket's
 * bytes of a sync stay off the agent's main thread.
 *
 * The main thread moves each blob's buffer back here once its bytes are in their file
 * (`free`), where it is dropped: V8 counts a buffer moved into a thread as memory that thread
 * allocated, and a main thread that let them pile up ran a full collection of its large heap
 * every ~64 MB received, where this thread's small heap frees them in its young generation.
 */
import { parentPort } from 'node:worker_threads'
import { createHash } from 'node:crypto'
import type { FrameChannel } from '../../common/channel.js'
import { parseSyncReply } from '../../protocol/sync.js'
import { dialPlane } from './client.js'
import type { PlaneGrant } from './server.js'

export type PullJob =
  | { t: 'dial', id: number, host: string, port: number, grant: PlaneGrant, maxFrameBytes: number }
  | { t: 'want', id: number, hashes: Uint8Array }
  | { t: 'close', id: number }
  /** Buffers of blobs whose bytes the main thread wrote: dropped here. */
  | { t: 'free', bufs: ArrayBuffer[] }

/**
 * A reply of the provider, as the fetcher takes it; `bad`: a blob whose bytes missed its hash.
 * `own`: the blob's buffer holds no other blob, so it can be given back (`free`) alone.
 */
export type PulledItem =
  | { t: 'blob', h: Uint8Array, d: Uint8Array, own?: true }
  | { t: 'missing', h: Uint8Array }
  | { t: 'bad', h: Uint8Array }
  | { t: 'error', error: { code: string, message: string } }

export type PullEvent =
  | { t: 'open', id: number }
  | { t: 'items', id: number, items: PulledItem[] }
  | { t: 'end', id: number, error?: { code: string, message: string } }

const port = parentPort!
const channels = new Map<number, FrameChannel>()

function post (ev: PullEvent, transfer: ArrayBuffer[] = []): void {
  port.postMessage(ev, transfer)
}

function wireError (err: unknown): { code: string, message: string } {
  const e = err as { code?: unknown, message?: unknown }
  return { code: typeof e.code === 'string' ? e.code : 'ERR_PEER_LOST', message: String(e.message ?? err) }
}

async function pump (id: number, channel: FrameChannel): Promise<void> {
  let items: PulledItem[] = []
  let transfer: ArrayBuffer[] = []
  let scheduled = false
  // one message per turn of this thread's loop, not per blob
  const flush = (): void => {
    scheduled = false
    if (items.length === 0) return
    post({ t: 'items', id, items }, transfer)
    items = []
    transfer = []
  }
  try {
    for (;;) {
      const raw = await channel.recv()
      if (raw === undefined) break
      const reply = parseSyncReply(raw)
      if (reply.t === 'blob') {
        if (createHash('sha256').update(reply.d).digest().equals(reply.h)) {
          // a copy of the hash: it is a view into the same frame as the blob, which moves
          const d = reply.d
          const buf = d.buffer as ArrayBuffer
          const sharer = transfer.includes(buf) ? items.find((i) => i.t === 'blob' && i.d.buffer === buf) : undefined
          if (sharer !== undefined) delete (sharer as { own?: true }).own
          else transfer.push(buf)
          items.push({ t: 'blob', h: Uint8Array.from(reply.h), d, ...(sharer === undefined ? { own: true as const } : {}) })
        } else {
          items.push({ t: 'bad', h: Uint8Array.from(reply.h) })
        }
      } else if (reply.t === 'missing' || reply.t === 'error') {
        items.push(reply.t === 'missing' ? { t: 'missing', h: Uint8Array.from(reply.h) } : reply)
      } else {
        throw Object.assign(new Error(`unexpected ${reply.t} on the data plane`), { code: 'ERR_BAD_MESSAGE' })
      }
      if (!scheduled) { scheduled = true; setImmediate(flush) }
    }
    flush()
    post({ t: 'end', id })
  } catch (err) {
    flush()
    post({ t: 'end', id, error: wireError(err) })
  } finally {
    channels.delete(id)
    channel.destroy()
  }
}

port.on('message', (job: PullJob) => {
  if (job.t === 'free') return
  if (job.t === 'dial') {
    dialPlane(job.host, job.port, job.grant, job.maxFrameBytes).then((channel) => {
      channels.set(job.id, channel)
      post({ t: 'open', id: job.id })
      void pump(job.id, channel)
    }, (err: unknown) => { post({ t: 'end', id: job.id, error: wireError(err) }) })
  } else if (job.t === 'want') {
    const c = channels.get(job.id)
    c?.send({ t: 'want', hashes: job.hashes }).catch((err: unknown) => { c.destroy(err as Error) })
  } else {
    const c = channels.get(job.id)
    if (c !== undefined) void c.close().catch(() => {})
  }
})
