/**
 * Big files are cut and hashed in worker threads: FastCDC and SHA-256 are CPU-bound (~1 GB/s
 * together on one core), so a workspace of big files scans about as many times faster as
 * there are cores. Small files stay on the main thread, where a blocking read costs less than
 * posting a job. Workers start with the first big file and end with the scan.
 *
 * Only available from compiled JavaScript (a worker cannot load a .ts file): under a test
 * runner that executes sources, scans hash on the main thread.
 */
import os from 'node:os'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { WorkerJob, WorkerReply } from './scan-worker.js'
import { HASH_BYTES, type ChunkRef } from './types.js'
import { SEGMENT_OVERLAP_BYTES, joinSegments, segmentStarts } from './segments.js'

/** Below this a file is hashed on the main thread: the round trip would cost more than it saves. */
export const WORKER_MIN_FILE_BYTES = 4 * 1024 * 1024
/** Worker threads at most; the main thread walks the tree and hashes small files meanwhile. */
export const MAX_SCAN_WORKERS = 4

const WORKER_URL = new URL('./scan-worker.js', import.meta.url)

/** How many workers a scan may use here: 0 when running from sources. */
export function defaultScanWorkers (): number {
  if (!import.meta.url.endsWith('.js') || !existsSync(fileURLToPath(WORKER_URL))) return 0
  return Math.min(MAX_SCAN_WORKERS, Math.max(1, os.availableParallelism()))
}

interface Pending {
  resolve: (got: { refs: ChunkRef[], eof: boolean }) => void
  reject: (err: Error) => void
}

export class WorkerPool {
  private readonly idle: Worker[] = []
  private readonly busy = new Map<Worker, number>()
  private readonly pending = new Map<number, Pending>()
  private readonly waiting: Array<{ job: WorkerJob, p: Pending }> = []
  private started = 0
  private nextId = 0
  private closed = false

  constructor (readonly size: number) {}

  get isClosed (): boolean {
    return this.closed
  }

  /**
   * The chunks of the file at `path` (`size` bytes by its stat), cut in a worker, or by several
   * at once in segments (segments.ts) when it is big enough and more than one may run: the
   * changed 300 MB file of an edit is then hashed in half the time on two cores.
   */
  async chunk (path: string, size = 0, signal?: AbortSignal): Promise<ChunkRef[]> {
    const starts = segmentStarts(size, this.size)
    if (starts.length > 1) {
      const segs = await Promise.all(starts.map(async (from, i) => {
        const limit = i + 1 < starts.length ? starts[i + 1]! + SEGMENT_OVERLAP_BYTES : Infinity
        return { from, limit, ...await this.run({ path, from, limit }, signal) }
      }))
      const joined = joinSegments(segs)
      if (joined !== undefined) return joined
    }
    return (await this.run({ path }, signal)).refs
  }

  /**
   * One job; `signal` cancels it: taken out of the queue, or its worker ended (a pool shared
   * by several scans outlives the one aborted, and must not go on hashing its files).
   */
  private async run (job: Omit<WorkerJob, 'id'>, signal?: AbortSignal): Promise<{ refs: ChunkRef[], eof: boolean }> {
    if (this.closed) throw new Error('the scan is over')
    signal?.throwIfAborted()
    const id = this.nextId++
    return await new Promise((resolve, reject) => {
      const onAbort = (): void => { this.cancel(id, signal!.reason as Error) }
      const done = (): void => { signal?.removeEventListener('abort', onAbort) }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiting.push({ job: { id, ...job }, p: { resolve: (got) => { done(); resolve(got) }, reject: (err) => { done(); reject(err) } } })
      this.pump()
    })
  }

  private cancel (id: number, why: Error): void {
    const queued = this.waiting.findIndex((w) => w.job.id === id)
    if (queued >= 0) {
      this.waiting.splice(queued, 1)[0]!.p.reject(why)
      return
    }
    const p = this.pending.get(id)
    if (p === undefined) return
    this.pending.delete(id)
    for (const [w, job] of this.busy) {
      if (job !== id) continue
      this.busy.delete(w)
      this.started--
      void w.terminate()
    }
    p.reject(why)
    this.pump()
  }

  /** Ends the workers; jobs still running fail. */
  async close (): Promise<void> {
    this.closed = true
    const all = [...this.idle, ...this.busy.keys()]
    this.idle.length = 0
    this.busy.clear()
    for (const { p } of this.waiting.splice(0)) p.reject(new Error('the scan is over'))
    await Promise.all(all.map(async (w) => await w.terminate()))
    for (const p of this.pending.values()) p.reject(new Error('the scan is over'))
    this.pending.clear()
  }

  private pump (): void {
    while (this.waiting.length > 0 && !this.closed) {
      let w = this.idle.pop()
      if (w === undefined && this.started < this.size) w = this.spawn()
      if (w === undefined) return
      const { job, p } = this.waiting.shift()!
      this.pending.set(job.id, p)
      this.busy.set(w, job.id)
      w.postMessage(job)
    }
  }

  private spawn (): Worker {
    this.started++
    const w = new Worker(WORKER_URL)
    w.unref() // a scan left unfinished must not keep the process alive
    w.on('message', (reply: WorkerReply) => {
      const p = this.pending.get(reply.id)
      this.pending.delete(reply.id)
      this.busy.delete(w)
      if (!this.closed) this.idle.push(w)
      if (p !== undefined) {
        if ('error' in reply) p.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }))
        else p.resolve({ refs: unpack(reply.hashes, reply.sizes), eof: reply.eof })
      }
      this.pump()
    })
    w.on('error', (err) => {
      // A worker that dies takes its job with it; a new one takes its place.
      const id = this.busy.get(w)
      this.busy.delete(w)
      this.started--
      if (id !== undefined) {
        this.pending.get(id)?.reject(err)
        this.pending.delete(id)
      }
      this.pump()
    })
    return w
  }
}

function unpack (hashes: Uint8Array, sizes: Uint32Array): ChunkRef[] {
  const refs = new Array<ChunkRef>(sizes.length)
  for (let i = 0; i < sizes.length; i++) refs[i] = { hash: hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), size: sizes[i]! }
  return refs
}
