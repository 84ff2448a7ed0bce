/**
 * Server-Sent Events: one typed event per message, its data one line of JSON (JSON.stringify
 * never emits a raw newline, so no data can forge an event), a comment every SSE_HEARTBEAT_MS
 * so a dead client is noticed, and `closed` once the client went away or the server ended it.
 */
import type { ServerResponse } from 'node:http'
import { MAX_SSE_BUFFER_BYTES, SSE_HEARTBEAT_MS } from './constants.js'

export class SseStream {
  private readonly heartbeat: NodeJS.Timeout
  private readonly gone = new AbortController()

  constructor (private readonly res: ServerResponse, headers: Record<string, string>) {
    res.writeHead(200, { ...headers, 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' })
    res.flushHeaders()
    res.socket?.setNoDelay(true)
    this.heartbeat = setInterval(() => { this.comment('') }, SSE_HEARTBEAT_MS)
    this.heartbeat.unref()
    const end = (): void => { this.close() }
    res.on('close', end)
    res.on('error', end)
  }

  /** Aborted when the stream is over, for whichever reason. */
  get signal (): AbortSignal { return this.gone.signal }
  get closed (): boolean { return this.gone.signal.aborted }

  /** Sends one event; resolves once the socket can take more (a slow client slows the source). */
  async send (event: string, data: unknown): Promise<void> {
    if (this.closed) return
    // a client that reads nothing while events keep coming is cut off, not buffered for
    if (this.res.writableLength > MAX_SSE_BUFFER_BYTES) { this.close(); return }
    if (!this.res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)) {
      await new Promise<void>((resolve) => {
        const done = (): void => { this.res.off('drain', done); this.gone.signal.removeEventListener('abort', done); resolve() }
        this.res.once('drain', done)
        this.gone.signal.addEventListener('abort', done, { once: true })
      })
    }
  }

  comment (text: string): void {
    if (!this.closed) this.res.write(`: ${text.replace(/[\r\n]/g, ' ')}\n\n`)
  }

  close (): void {
    if (this.closed) return
    clearInterval(this.heartbeat)
    this.gone.abort()
    if (!this.res.writableEnded) this.res.end()
  }
}
