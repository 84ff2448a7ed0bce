/**
 * A thread that writes the small files of a sync (file-writer-worker.ts) while the main
 * thread receives, stores and resolves the next ones: on ext4 creating a file costs
 * 160–380 µs of kernel time, and 10,000 of them were most of a small-file sync. Files asked
 * for in the same turn of the event loop go as one batch. Started once and kept (unref'd);
 * running from sources (a worker cannot load a .ts file) there is none, and callers write on
 * their own thread.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { SmallFile, WriteJob, WriteReply } from './file-writer-worker.js'

const WORKER_URL = new URL('./file-writer-worker.js', import.meta.url)
/** Small files in flight at once with a writer (without one, MATERIALIZE_CONCURRENCY). */
export const WRITER_CONCURRENCY = 64

interface Waiter { resolve: (r: { tmp?: string }) => void, reject: (e: Error) => void }

export class FileWriter {
  private worker: Worker | undefined
  private nextId = 0
  private queued: Array<{ file: SmallFile, waiter: Waiter }> = []
  private readonly pending = new Map<number, Waiter[]>()

  static start (): FileWriter | undefined {
    if (!import.meta.url.endsWith('.js') || !existsSync(fileURLToPath(WORKER_URL))) return undefined
    const w = new FileWriter()
    w.spawn()
    return w
  }

  /** Whether it can take files (its thread runs). */
  get available (): boolean {
    return this.worker !== undefined
  }

  /**
   * Writes `file` and renames it over its target; resolves with `tmp` when something at the
   * target stopped the rename (the caller clears it and renames), rejects with the error.
   */
  async write (file: SmallFile): Promise<{ tmp?: string }> {
    if (this.worker === undefined) throw new Error('the file writer has stopped')
    return await new Promise((resolve, reject) => {
      if (this.queued.length === 0) setImmediate(() => { this.flush() })
      this.queued.push({ file, waiter: { resolve, reject } })
    })
  }

  async close (): Promise<void> {
    const w = this.worker
    this.worker = undefined
    this.fail(new Error('the file writer has stopped'))
    await w?.terminate()
  }

  private flush (): void {
    const batch = this.queued
    this.queued = []
    if (batch.length === 0) return
    if (this.worker === undefined) {
      for (const b of batch) b.waiter.reject(new Error('the file writer has stopped'))
      return
    }
    const id = this.nextId++
    this.pending.set(id, batch.map((b) => b.waiter))
    this.worker.postMessage({ id, files: batch.map((b) => b.file) } satisfies WriteJob)
  }

  private spawn (): void {
    const w = new Worker(WORKER_URL)
    w.unref()
    w.on('message', (reply: WriteReply) => {
      const waiters = this.pending.get(reply.id)
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
      // what was in flight fails (the sync fails and the next one starts from scratch)
      if (this.worker === w) this.worker = undefined
      this.fail(err)
    })
    this.worker = w
  }

  private fail (err: Error): void {
    for (const waiters of this.pending.values()) for (const w of waiters) w.reject(err)
    this.pending.clear()
    for (const b of this.queued.splice(0)) b.waiter.reject(err)
  }
}
