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
import { nameThread, THREAD_NAMES } from '../../common/thread-name.js'

nameThread(THREAD_NAMES.pull)

export type PullJob =
  | { t: 'dial', id: number, host: string, port: number, grant: PlaneGrant, maxFrameBytes: number }
  | { t: 'want', id: number, hashes: Uint8Array }
  | { t: 'close', id: number }
  /** Buffers of blobs whose bytes the main thread wrote: dropped here. */
  | { t: 'free', bufs: ArrayBuffer[] }

/**
 * A reply of the provider, as the fetcher takes it; `bad`: a blob whose bytes missed its hash.
 * A blob's buffer is the record it came in, which may hold other blobs of the same message:
 * it comes back (`free`) once every one of them is given back.
 */
export type PulledItem =
  | { t: 'blob', h: Uint8Array, d: Uint8Array }
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
  let transfer = new Set<ArrayBuffer>()
  let scheduled = false
  // One message per turn of this thread's loop, not per blob. A record's frames all arrive
  // in one turn (the channel decodes a whole record at once), so its buffer moves whole.
  const flush = (): void => {
    scheduled = false
    if (items.length === 0) return
    post({ t: 'items', id, items }, [...transfer])
    items = []
    transfer = new Set()
  }
  try {
    for (;;) {
      const raw = await channel.recv()
      if (raw === undefined) break
      const reply = parseSyncReply(raw)
      if (reply.t === 'blob') {
        if (createHash('sha256').update(reply.d).digest().equals(reply.h)) {
          // a copy of the hash: it is a view into the same record as the blob, which moves
          transfer.add(reply.d.buffer as ArrayBuffer)
          items.push({ t: 'blob', h: Uint8Array.from(reply.h), d: reply.d })
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
