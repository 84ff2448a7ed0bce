/**
 * A thread that lstats half of a copy's files while the main thread does the other half: the
 * copy check runs before every reuse of a copy, on the path of every `vrun`, and one lstat per
 * file is nearly all it costs (about 2 threads' worth faster on 10,000 files, see the
 * `copy-check` bench). The thread is started once and kept (unref'd, so it never holds the
 * process); until it is ready, and when running from sources (a worker cannot load a .ts
 * file), the main thread stats everything.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { StatJob, StatReply } from './stat-worker.js'
import type { FileStatKey } from './types.js'

/** Below this many paths a thread round trip costs more than it saves. */
export const WORKER_MIN_FILES = 2048

/** Numbers per path in a reply: mode (-1: none), size, mtimeNs, ctimeNs, ino, nlink. */
export const STAT_FIELDS = 6

/**
 * What a scan uses of an lstat: `lstatSync`'s BigIntStats, or the same read from a worker's
 * packed reply (PackedStat).
 */
export interface ScanStat extends FileStatKey {
  mode: bigint
  /** Hard links: a file with more than one can change through a directory the scan never saw. */
  nlink: bigint
  isFile: () => boolean
  isDirectory: () => boolean
  isSymbolicLink: () => boolean
  isFIFO: () => boolean
  isSocket: () => boolean
  isCharacterDevice: () => boolean
  isBlockDevice: () => boolean
}

/** File types in a stat's mode (bigint, as a packed reply holds them). */
export const S_IFMT = 0o170000n
export const S_IFREG = 0o100000n
export const S_IFLNK = 0o120000n

/** One path's stat from a worker's reply (its mode is not -1: the path was there). */
export class PackedStat implements ScanStat {
  readonly mode: bigint
  readonly size: bigint
  readonly mtimeNs: bigint
  readonly ctimeNs: bigint
  readonly ino: bigint
  readonly nlink: bigint

  constructor (stats: BigInt64Array, i: number) {
    const o = i * STAT_FIELDS
    this.mode = stats[o]!
    this.size = stats[o + 1]!
    this.mtimeNs = stats[o + 2]!
    this.ctimeNs = stats[o + 3]!
    this.ino = BigInt.asUintN(64, stats[o + 4]!)
    this.nlink = stats[o + 5]!
  }

  private is (type: bigint): boolean { return (this.mode & S_IFMT) === type }
  isFile (): boolean { return this.is(S_IFREG) }
  isDirectory (): boolean { return this.is(0o040000n) }
  isSymbolicLink (): boolean { return this.is(S_IFLNK) }
  isFIFO (): boolean { return this.is(0o010000n) }
  isSocket (): boolean { return this.is(0o140000n) }
  isCharacterDevice (): boolean { return this.is(0o020000n) }
  isBlockDevice (): boolean { return this.is(0o060000n) }
}

const WORKER_URL = new URL('./stat-worker.js', import.meta.url)
/** A thread that keeps failing is given up: the main thread stats everything then. */
const MAX_RESTARTS = 3

export class StatWorker {
  private worker: Worker | undefined
  private ready = false
  private nextId = 0
  private restarts = 0
  private readonly pending = new Map<number, { resolve: (s: BigInt64Array) => void, reject: (e: Error) => void }>()

  /** A worker, started now; undefined when running from sources. */
  static start (): StatWorker | undefined {
    if (!import.meta.url.endsWith('.js') || !existsSync(fileURLToPath(WORKER_URL))) return undefined
    const s = new StatWorker()
    s.spawn()
    return s
  }

  /** Whether a job sent now would start at once (the thread has started). */
  get available (): boolean {
    return this.ready && this.worker !== undefined
  }

  /** The stats of `paths`, STAT_FIELDS each: mode (-1: none), size, mtimeNs, ctimeNs, ino, nlink. */
  async lstat (paths: string[]): Promise<BigInt64Array> {
    const w = this.worker
    if (w === undefined) throw new Error('the stat worker has stopped')
    const id = this.nextId++
    return await new Promise<BigInt64Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      w.postMessage({ id, paths } satisfies StatJob)
    })
  }

  async close (): Promise<void> {
    const w = this.worker
    this.worker = undefined
    this.fail(new Error('the stat worker has stopped'))
    await w?.terminate()
  }

  private spawn (): void {
    const w = new Worker(WORKER_URL)
    w.unref()
    w.once('online', () => { this.ready = true })
    w.on('message', (reply: StatReply) => {
      const p = this.pending.get(reply.id)
      this.pending.delete(reply.id)
      p?.resolve(reply.stats)
    })
    w.on('error', (err) => {
      // Jobs fail (the check then stats on the main thread); a new thread takes its place.
      this.ready = false
      this.fail(err)
      if (this.worker === w && ++this.restarts <= MAX_RESTARTS) this.spawn()
      else if (this.worker === w) this.worker = undefined
    })
    this.worker = w
  }

  private fail (err: Error): void {
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
  }
}
