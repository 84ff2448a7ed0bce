/**
 * The serving end of the data plane, as the agent's main thread sees it: listeners beside
 * libp2p's (listener.ts), one per thread (serve-worker.ts) when the agent runs built, each on
 * a port of its own; one on the main thread when running from sources (a worker cannot load
 * a .ts file) or when no thread starts.
 *
 * A sync stream that asks for the plane gets a grant: the ports, a ticket and a session key,
 * over the stream (cipher.ts). Its connections ask for blobs by hash and the grant's
 * `resolve` (the export, which stays on this thread) says where each one is. A grant ends
 * with the stream that asked for it, and its connections with it.
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { createLogger } from '../../common/log.js'
import { HASH_BYTES } from '../types.js'
import { newPlaneKey } from './cipher.js'
import { PLANE_TICKET_BYTES } from './hello.js'
import { PlaneListener, type Found, type ListenerHooks } from './listener.js'
import type { ServeEvent, ServeJob } from './serve-worker.js'

export { MAX_PLANE_CONNECTIONS } from './listener.js'

const log = createLogger('sync')
const WORKER_URL = new URL('./serve-worker.js', import.meta.url)
/** A listener thread that does not say its port in this long is given up. */
const THREAD_START_TIMEOUT_MS = 10_000

export interface PlaneGrant {
  /** One port per listener: a puller spreads its connections over them. */
  ports: number[]
  ticket: Uint8Array
  key: Uint8Array
}

/** Where one blob of the export is (a record's bytes, a chunk's file), undefined when not in it. */
export type Resolve = (hash: Uint8Array) => Found | undefined

interface Grant {
  resolve: Resolve
  /** Connections at each listener, by its index. */
  live: Map<number, number>
}

/** One listener, in a thread or on this one. */
interface Lane {
  port: number
  grant: (ticket: string, key: Uint8Array, maxFrameBytes: number) => void
  end: (ticket: string) => void
  close: () => Promise<void>
}

export class PlaneServer {
  private readonly grants = new Map<string, Grant>()
  private lanes: Lane[] = []
  private starting: Promise<void> | undefined
  private closed = false

  /**
   * A data plane for `host` (an address of this machine): `threads` listeners in threads of
   * their own, or one on this thread when running from sources. Nothing starts before the
   * first grant: an agent that never serves a sync keeps no thread for it.
   */
  constructor (private readonly host: string, private readonly threads = 1) {}

  /**
   * A grant for one sync stream, or undefined when no listener could start. `live()` counts
   * its connections; `end()` closes them and refuses new ones.
   */
  async grant (resolve: Resolve, maxFrameBytes: number): Promise<{ offer: PlaneGrant, live: () => number, end: () => void } | undefined> {
    this.starting ??= this.start()
    await this.starting
    if (this.lanes.length === 0 || this.closed) return undefined
    const ticket = randomBytes(PLANE_TICKET_BYTES)
    const key = newPlaneKey()
    const id = ticket.toString('hex')
    const g: Grant = { resolve, live: new Map() }
    this.grants.set(id, g)
    for (const lane of this.lanes) lane.grant(id, key, maxFrameBytes)
    return {
      offer: { ports: this.lanes.map((l) => l.port), ticket, key },
      live: () => { let n = 0; for (const v of g.live.values()) n += v; return n },
      end: () => {
        this.grants.delete(id)
        for (const lane of this.lanes) lane.end(id)
      }
    }
  }

  private async start (): Promise<void> {
    if (import.meta.url.endsWith('.js') && existsSync(fileURLToPath(WORKER_URL))) {
      const started = await Promise.allSettled(Array.from({ length: this.threads }, async (_, i) => await this.startThread(this.host, i)))
      this.lanes = started.flatMap((r) => r.status === 'fulfilled' ? [r.value] : [])
      const failed = started.find((r) => r.status === 'rejected')
      if (failed !== undefined) log.warn('a data plane thread did not start', failed.reason)
    }
    if (this.lanes.length === 0) {
      try {
        this.lanes = [await this.startHere(this.host)]
      } catch (err) {
        log.warn(`no data plane on ${this.host}: syncs go over libp2p streams only`, err)
        return
      }
    }
    log.debug(`data plane on ${this.host}, ports ${this.ports.join(', ')}`)
    // closed while it started
    if (this.closed) await this.close()
  }

  /** The listeners' ports. */
  get ports (): number[] {
    return this.lanes.map((l) => l.port)
  }

  /** Grants open now (for tests: a stream's end takes its grant with it). */
  get grantCount (): number {
    return this.grants.size
  }

  async close (): Promise<void> {
    this.closed = true
    this.grants.clear()
    await Promise.all(this.lanes.splice(0).map(async (l) => { await l.close() }))
  }

  private resolveAll (ticket: string, hashes: Uint8Array): Found[] {
    const g = this.grants.get(ticket)
    const found: Found[] = []
    for (let off = 0; off < hashes.byteLength; off += HASH_BYTES) {
      found.push(g?.resolve(hashes.subarray(off, off + HASH_BYTES)) ?? null)
    }
    return found
  }

  private noteLive (ticket: string, lane: number, n: number): void {
    const g = this.grants.get(ticket)
    g?.live.set(lane, n)
  }

  private async startHere (host: string): Promise<Lane> {
    const hooks: ListenerHooks = {
      resolve: async (ticket, hashes) => this.resolveAll(ticket, hashes),
      live: (ticket, n) => { this.noteLive(ticket, 0, n) },
      warn: (message, err) => { log.warn(message, err) }
    }
    const l = await PlaneListener.listen(host, hooks)
    return {
      port: l.port,
      grant: (ticket, key, max) => { l.grant(ticket, key, max) },
      end: (ticket) => { l.end(ticket) },
      close: async () => { await l.close() }
    }
  }

  private async startThread (host: string, index: number): Promise<Lane> {
    const w = new Worker(WORKER_URL, { workerData: { host } })
    w.unref()
    const post = (job: ServeJob): void => { w.postMessage(job) }
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`no port within ${THREAD_START_TIMEOUT_MS} ms`)) }, THREAD_START_TIMEOUT_MS)
      w.once('error', (err) => { clearTimeout(timer); reject(err) })
      w.on('message', (ev: ServeEvent) => {
        if (ev.t === 'listening') {
          clearTimeout(timer)
          resolve(ev.port)
        } else if (ev.t === 'resolve') {
          post({ t: 'found', req: ev.req, found: this.resolveAll(ev.ticket, ev.hashes) })
        } else if (ev.t === 'live') {
          this.noteLive(ev.ticket, index, ev.n)
        } else {
          log.warn(`${ev.message}: ${ev.error}`)
        }
      })
    }).catch(async (err: unknown) => { await w.terminate(); throw err })
    w.on('error', (err) => { log.warn('a data plane thread failed', err) })
    const lane: Lane = {
      port,
      grant: (ticket, key, maxFrameBytes) => { post({ t: 'grant', ticket, key, maxFrameBytes }) },
      end: (ticket) => { post({ t: 'end', ticket }) },
      close: async () => { await w.terminate() }
    }
    // a thread that died takes its port out of the grants to come
    w.once('exit', () => { this.lanes = this.lanes.filter((l) => l !== lane) })
    return lane
  }
}
