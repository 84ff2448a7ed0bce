/**
 * Data plane connections run by threads (pull-worker.ts): each connection lives in one of up
 * to `threads` workers, started on first use and kept (unref'd, so they never hold the
 * process). To the fetcher a connection is a FrameChannel whose replies come parsed and
 * whose blobs were checked against their hashes in the thread (`verified`), a blob that
 * failed being told as `bad`.
 *
 * A blob's buffer goes back to a thread once the main thread has written its bytes
 * (giveBack, see pull-worker.ts).
 *
 * Running from sources (tests under vitest: a worker cannot load a .ts file) there are no
 * threads, and `available` is false: the caller dials on its own thread instead.
 */
import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { Inbox, type FrameChannel } from '../../common/channel.js'
import { VgridError, fromWire } from '../../common/errors.js'
import type { PullEvent, PullJob, PulledItem } from './pull-worker.js'
import type { PlaneGrant } from './server.js'

const WORKER_URL = new URL('./pull-worker.js', import.meta.url)

/**
 * Connections (and threads) a puller opens to one provider: a quarter of this machine's
 * cores, 1 to 4 (each connection's thread opens, decodes and hashes ~1 GB/s at most).
 */
export function planeConnections (): number {
  return Math.max(1, Math.min(4, Math.floor(availableParallelism() / 4)))
}

interface Conn {
  /** What the thread received, verified. */
  inbox: Inbox
  opened: { resolve: () => void, reject: (e: Error) => void } | undefined
}

export class PlanePullers {
  private readonly workers: Worker[] = []
  private nextWorker = 0
  private nextId = 0
  private readonly conns = new Map<number, { worker: Worker, conn: Conn }>()
  /** Records that came from a thread, with how many of their blobs are not given back yet. */
  private readonly lent = new WeakMap<ArrayBuffer, number>()
  /** Given back, to go to a thread in one message at the end of this turn. */
  private freed: ArrayBuffer[] = []

  constructor (private readonly threads: number) {}

  static get available (): boolean {
    return import.meta.url.endsWith('.js') && existsSync(fileURLToPath(WORKER_URL))
  }

  /** A connection to `port` of the grant on `host`, run by one of the threads. */
  async dial (host: string, port: number, grant: PlaneGrant, maxFrameBytes: number, signal?: AbortSignal): Promise<FrameChannel<PulledItem>> {
    signal?.throwIfAborted()
    const worker = this.worker()
    const id = this.nextId++
    const conn: Conn = { inbox: new Inbox(), opened: undefined }
    this.conns.set(id, { worker, conn })
    const post = (job: PullJob): void => { worker.postMessage(job) }
    const onAbort = (): void => { post({ t: 'close', id }) }
    try {
      await new Promise<void>((resolve, reject) => {
        conn.opened = { resolve, reject }
        post({ t: 'dial', id, host, port, grant, maxFrameBytes })
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    } catch (err) {
      this.conns.delete(id)
      throw err
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
    return {
      get closed () { return conn.inbox.ended },
      send: async (msg) => {
        if (conn.inbox.ended) throw conn.inbox.error ?? new VgridError('ERR_PEER_LOST', 'the data plane connection is closed')
        const m = msg as { t: string, hashes?: Uint8Array }
        if (m.t !== 'want' || m.hashes === undefined) throw new VgridError('ERR_INTERNAL', `only wants go over the data plane, not ${m.t}`)
        post({ t: 'want', id, hashes: m.hashes })
      },
      recv: async () => await conn.inbox.next() as PulledItem | undefined,
      close: async () => { post({ t: 'close', id }) },
      destroy: (err) => {
        post({ t: 'close', id })
        this.end(id, err)
      }
    }
  }

  /**
   * `data`'s record back to a thread, when it came from one, once this was the last of its
   * blobs not given back; whether the blob counts as given back. The caller must hold no view
   * of it any more: the record is detached with its last blob.
   */
  giveBack (data: Uint8Array): boolean {
    const buf = data.buffer as ArrayBuffer
    const blobs = this.lent.get(buf)
    if (blobs === undefined) return false
    // the record holds other blobs still: it goes back with the last of them
    if (blobs > 1) {
      this.lent.set(buf, blobs - 1)
      return true
    }
    this.lent.delete(buf)
    if (this.freed.length === 0) setImmediate(() => { this.sendFreed() })
    this.freed.push(buf)
    return true
  }

  private sendFreed (): void {
    const bufs = this.freed
    this.freed = []
    const w = this.workers[0]
    // no thread left: the buffers stay here and are collected as any other
    if (w === undefined) return
    w.postMessage({ t: 'free', bufs } satisfies PullJob, bufs)
  }

  async close (): Promise<void> {
    for (const id of [...this.conns.keys()]) this.end(id, new VgridError('ERR_PEER_LOST', 'the data plane threads stopped'))
    await Promise.all(this.workers.splice(0).map(async (w) => await w.terminate()))
  }

  private worker (): Worker {
    if (this.workers.length < this.threads) {
      const w = new Worker(WORKER_URL)
      w.unref()
      w.on('message', (ev: PullEvent) => { this.onEvent(ev) })
      w.on('error', (err) => { this.lost(w, err) })
      w.on('exit', () => { this.lost(w, new VgridError('ERR_INTERNAL', 'a data plane thread stopped')) })
      this.workers.push(w)
      return w
    }
    return this.workers[this.nextWorker++ % this.workers.length]!
  }

  /** A thread that died takes its connections with it; the next dial starts another. */
  private lost (w: Worker, err: Error): void {
    const i = this.workers.indexOf(w)
    if (i >= 0) this.workers.splice(i, 1)
    for (const [id, c] of this.conns) if (c.worker === w) this.end(id, err)
  }

  private onEvent (ev: PullEvent): void {
    const c = this.conns.get(ev.id)?.conn
    if (c === undefined) return
    if (ev.t === 'open') {
      c.opened?.resolve()
      c.opened = undefined
    } else if (ev.t === 'items') {
      for (const item of ev.items) {
        if (item.t === 'blob') this.lent.set(item.d.buffer as ArrayBuffer, (this.lent.get(item.d.buffer as ArrayBuffer) ?? 0) + 1)
        c.inbox.push(item)
      }
    } else {
      this.end(ev.id, ev.error === undefined ? undefined : fromWire(ev.error))
    }
  }

  private end (id: number, err?: Error): void {
    const c = this.conns.get(id)?.conn
    if (c === undefined) return
    this.conns.delete(id)
    c.inbox.end(err)
    c.opened?.reject(err ?? new VgridError('ERR_PEER_LOST', 'the data plane connection closed'))
    c.opened = undefined
  }
}
