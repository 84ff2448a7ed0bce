/**
 * Worker thread of scan-workers.ts: cuts and hashes one file per message, so that a scan of
 * big files uses more than one core. Replies with the chunks packed into two transferable
 * arrays (hashes end to end, sizes), or the error's code and message.
 */
import { parentPort } from 'node:worker_threads'
import { chunkRangeSync } from './chunk-file.js'
import { HASH_BYTES } from './types.js'
import { nameThread, THREAD_NAMES } from '../common/thread-name.js'

nameThread(THREAD_NAMES.scan)

/** `from`/`limit`: one segment of the file (segments.ts), else all of it. */
export interface WorkerJob { id: number, path: string, from?: number, limit?: number }
export type WorkerReply =
  | { id: number, hashes: Uint8Array, sizes: Uint32Array, eof: boolean }
  | { id: number, error: { message: string, code?: string } }

parentPort?.on('message', (job: WorkerJob) => {
  let reply: WorkerReply
  try {
    const { refs, eof } = chunkRangeSync(job.path, job.from ?? 0, job.limit ?? Infinity)
    const hashes = new Uint8Array(refs.length * HASH_BYTES)
    const sizes = new Uint32Array(refs.length)
    refs.forEach((r, i) => { hashes.set(r.hash, i * HASH_BYTES); sizes[i] = r.size })
    reply = { id: job.id, hashes, sizes, eof }
    parentPort!.postMessage(reply, [hashes.buffer, sizes.buffer])
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    reply = { id: job.id, error: { message: e.message, ...(e.code !== undefined ? { code: e.code } : {}) } }
    parentPort!.postMessage(reply)
  }
})
