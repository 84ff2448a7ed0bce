/**
 * A thread that writes the small files of a sync (file-writer-worker.ts) while the main
 * thread receives, stores and resolves the next ones: on ext4 creating a file costs
 * 160–380 µs of kernel time, and 10,000 of them were most of a small-file sync. Files asked
 * for in the same turn of the event loop go as one batch, split between the threads when
 * there are several (writerThreads). Started once and kept (unref'd); running from sources
 * (a worker cannot load a .ts file) there is none, and callers write on their own thread.
 */
import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { SmallFile, WriteJob, WriteReply } from './file-writer-worker.js'

const WORKER_URL = new URL('./file-writer-worker.js', import.meta.url)
/** Small files in flight at once per writer thread (without one, MATERIALIZE_CONCURRENCY). */
export const WRITER_CONCURRENCY = 64
/** A batch is split between threads only into parts of at least this many files. */
const MIN_PART_FILES = 16

/**
 * Writer threads: a quarter of this machine's cores, 1 to 4, as the data plane's connections
 * (plane/pullers.ts). Creating files scales with threads on ext4: 10,000 files of 3.5 KB in
 * 100 directories, 620–810 ms with one thread and 435–505 ms with two on an idle 2-core
 * machine. During a sync the others are busy there, so one thread below 8 cores.
 */
export function writerThreads (): number {
  return Math.max(1, Math.min(4, Math.floor(availableParallelism() / 4)))
}

interface Waiter { resolve: (r: { tmp?: string }) => void, reject: (e: Error) => void }

export class FileWriter {
  private workers: Worker[] = []
  private turn = 0
  private nextId = 0
  private queued: Array<{ file: SmallFile, waiter: Waiter }> = []
  private readonly pending = new Map<number, { worker: Worker, waiters: Waiter[] }>()

  static start (threads = writerThreads()): FileWriter | undefined {
    if (!import.meta.url.endsWith('.js') || !existsSync(fileURLToPath(WORKER_URL))) return undefined
    const w = new FileWriter()
    for (let i = 0; i < Math.max(1, threads); i++) w.spawn()
    return w
  }

  /** Whether it can take files (a thread of it runs). */
  get available (): boolean {
    return this.workers.length > 0
  }

  /** Its threads still running. */
  get threads (): number {
    return this.workers.length
  }

  /**
   * Writes `file` and renames it over its target; resolves with `tmp` when something at the
   * target stopped the rename (the caller clears it and renames), rejects with the error.
   */
  async write (file: SmallFile): Promise<{ tmp?: string }> {
    if (this.workers.length === 0) throw new Error('the file writer has stopped')
    return await new Promise((resolve, reject) => {
      if (this.queued.length === 0) setImmediate(() => { this.flush() })
      this.queued.push({ file, waiter: { resolve, reject } })
    })
  }

  async close (): Promise<void> {
    const workers = this.workers
    this.workers = []
    this.fail(new Error('the file writer has stopped'))
    await Promise.all(workers.map(async (w) => await w.terminate()))
  }

  private flush (): void {
    const batch = this.queued
    this.queued = []
    if (batch.length === 0) return
    const n = this.workers.length
    if (n === 0) {
      for (const b of batch) b.waiter.reject(new Error('the file writer has stopped'))
      return
    }
    const parts = Math.max(1, Math.min(n, Math.floor(batch.length / MIN_PART_FILES)))
    const size = Math.ceil(batch.length / parts)
    for (let from = 0; from < batch.length; from += size) {
      const part = batch.slice(from, from + size)
      const worker = this.workers[this.turn++ % n]!
      const id = this.nextId++
      this.pending.set(id, { worker, waiters: part.map((b) => b.waiter) })
      worker.postMessage({ id, files: part.map((b) => b.file) } satisfies WriteJob)
    }
  }

  private spawn (): void {
    const w = new Worker(WORKER_URL)
    w.unref()
    w.on('message', (reply: WriteReply) => {
      const waiters = this.pending.get(reply.id)?.waiters
      this.pending.delete(reply.id)
      reply.results.forEach((r, i) => {
        const waiter = waiters?.[i]
        if (waiter === undefined) return
        if (r === null) waiter.resolve({})
        else if ('tmp' in r) waiter.resolve({ tmp: r.tmp })
        else waiter.reject(Object.assign(new Error(r.error.message), r.error.code !== undefined ? { code: r.error.code } : {}))
      })
    })
    w.on('error', (err) => {
      // what was in flight there fails (the sync fails and the next one starts from scratch);
      // the other threads go on
      this.workers = this.workers.filter((x) => x !== w)
      for (const [id, p] of this.pending) {
        if (p.worker !== w) continue
        this.pending.delete(id)
        for (const waiter of p.waiters) waiter.reject(err)
      }
      if (this.workers.length === 0) this.fail(err)
    })
    this.workers.push(w)
  }

  private fail (err: Error): void {
    for (const p of this.pending.values()) for (const w of p.waiters) w.reject(err)
    this.pending.clear()
    for (const b of this.queued.splice(0)) b.waiter.reject(err)
  }
}
