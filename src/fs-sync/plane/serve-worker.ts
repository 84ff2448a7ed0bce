/**
 * A thread that runs one data plane listener (listener.ts) for the agent's main thread
 * (server.ts), which keeps the exports and answers where each asked-for blob lies.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { PlaneListener, type Found } from './listener.js'
import { nameThread, THREAD_NAMES } from '../../common/thread-name.js'

nameThread(THREAD_NAMES.serve)

export type ServeJob =
  | { t: 'grant', ticket: string, key: Uint8Array, maxFrameBytes: number }
  | { t: 'end', ticket: string }
  | { t: 'found', req: number, found: Found[] }

export type ServeEvent =
  | { t: 'listening', port: number }
  | { t: 'resolve', req: number, ticket: string, hashes: Uint8Array }
  | { t: 'live', ticket: string, n: number }
  | { t: 'warn', message: string, error: string }

const port = parentPort!
const waiting = new Map<number, (found: Found[]) => void>()
let nextReq = 0
const post = (ev: ServeEvent): void => { port.postMessage(ev) }

const listener = await PlaneListener.listen((workerData as { host: string }).host, {
  resolve: async (ticket, hashes) => await new Promise<Found[]>((resolve) => {
    const req = nextReq++
    waiting.set(req, resolve)
    // a copy: the hashes are a view into the whole decrypted frame
    post({ t: 'resolve', req, ticket, hashes: Uint8Array.from(hashes) })
  }),
  live: (ticket, n) => { post({ t: 'live', ticket, n }) },
  warn: (message, err) => { post({ t: 'warn', message, error: String((err as Error | undefined)?.message ?? err) }) }
})

port.on('message', (job: ServeJob) => {
  if (job.t === 'grant') listener.grant(job.ticket, job.key, job.maxFrameBytes)
  else if (job.t === 'end') listener.end(job.ticket)
  else {
    const resolve = waiting.get(job.req)
    waiting.delete(job.req)
    resolve?.(job.found)
  }
})
post({ t: 'listening', port: listener.port })
