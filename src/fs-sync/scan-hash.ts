/**
 * The hashing half of a scan: a small queue that cuts a few files at once while the walk goes
 * on, and the read of one file, checked against its stat so that a file written during the
 * scan is never recorded in the stat cache with content it no longer has.
 */
import fsp from 'node:fs/promises'
import type { ScanStat } from './stat-workers.js'
import type { ChunkRef } from './types.js'

/** Cuts the file at an absolute path (`size` bytes by its stat) into chunks named by SHA-256. */
export type ChunkFn = (absPath: string, size: number, signal?: AbortSignal) => Promise<ChunkRef[]>

export type FileChunks =
  | { chunks: ChunkRef[], size: number, stat: ScanStat, stable: boolean }
  | { error: string }

/**
 * The chunks of a file whose lstat was `st`. When the bytes read do not add up to the size
 * it had, it changed while being read: stat and read once more; `stable` is false when that
 * happens again (then what was read is used, and the caller must not cache it).
 */
export async function fileChunks (absPath: string, st: ScanStat, chunk: ChunkFn, signal?: AbortSignal): Promise<FileChunks> {
  let stat: ScanStat = st
  for (let attempt = 0; ; attempt++) {
    let chunks: ChunkRef[]
    try {
      chunks = await chunk(absPath, Number(stat.size), signal)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return { error: 'it vanished during the scan' }
      if (code === 'EISDIR' || code === 'ENOTDIR' || code === 'ELOOP') return { error: 'it changed during the scan' }
      if (code === 'EACCES' || code === 'EPERM') return { error: (err as Error).message }
      throw err
    }
    let size = 0
    for (const c of chunks) size += c.size
    if (BigInt(size) === stat.size) return { chunks, size, stat, stable: true }
    if (attempt === 1) return { chunks, size, stat, stable: false }
    try {
      stat = await fsp.lstat(absPath, { bigint: true })
    } catch {
      return { error: 'it vanished during the scan' }
    }
    if (!stat.isFile()) return { error: 'it changed during the scan' }
  }
}

/** Runs jobs `limit` at a time; the first failure stops new ones and is thrown by drain(). */
export class HashQueue {
  private running = 0
  private readonly jobs: Array<() => Promise<void>> = []
  private failure: { err: unknown } | undefined
  private readonly idle: Array<() => void> = []
  private stopped = false

  constructor (private readonly limit: number, private readonly signal?: AbortSignal) {}

  /** Jobs queued or running. */
  get size (): number {
    return this.running + this.jobs.length
  }

  add (job: () => Promise<void>): void {
    if (this.failure !== undefined) throw this.failure.err
    this.jobs.push(job)
    this.pump()
  }

  /** Resolves when fewer than `n` jobs are queued or running; throws a failure at once. */
  async whenBelow (n: number): Promise<void> {
    while (this.size >= Math.max(1, n) && this.failure === undefined) {
      await new Promise<void>((resolve) => this.idle.push(resolve))
    }
    if (this.failure !== undefined) throw this.failure.err
  }

  async drain (): Promise<void> {
    await this.whenBelow(1)
  }

  /** No job starts after this. */
  stop (): void {
    this.stopped = true
    this.jobs.length = 0
  }

  private pump (): void {
    while (this.running < this.limit && this.jobs.length > 0 && !this.stopped && this.failure === undefined) {
      const job = this.jobs.shift()!
      this.running++
      void (async () => {
        try {
          this.signal?.throwIfAborted()
          await job()
        } catch (err) {
          this.failure ??= { err }
        } finally {
          this.running--
          this.pump()
          for (const wake of this.idle.splice(0)) wake()
        }
      })()
    }
  }
}
