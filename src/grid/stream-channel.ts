/**
 * A libp2p stream as a FrameChannel: unsigned-varint length-prefixed CBOR frames (the framing
 * of it-length-prefixed / lpStream), with backpressure both ways.
 *
 * We frame by hand instead of using @libp2p/utils' lpStream because its reader buffers all
 * incoming data however slowly it is read (the stream is aborted at 4 MiB) and cannot tell a
 * clean end from a truncated frame. Here the reader pauses the stream once enough decoded
 * messages wait unread; a paused yamux stream stops granting send window, so a fast sender
 * blocks in send() instead of filling our memory. Writes wait for the 'drain' event (not
 * stream.onDrain(), which is broken in @libp2p/utils 7.4.1) and are cut to MAX_WRITE_BYTES.
 */
import type { Logger, Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import { encode } from 'cborg'
import { decodeBody, type FrameChannel } from '../common/channel.js'
import { VgridError } from '../common/errors.js'
import { MAX_WRITE_BYTES, RECV_HIGH_WATER_BYTES, RECV_HIGH_WATER_MESSAGES } from './constants.js'

/** 2^56 is far past any frame cap; a longer prefix is garbage. */
const MAX_VARINT_BYTES = 8

export function encodeVarint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Uint8Array.from(out)
}

/** Accumulates stream bytes and cuts length-prefixed frames out of them. */
export class FrameReader {
  private chunks: Uint8Array[] = []
  private offset = 0
  buffered = 0

  constructor (private readonly maxFrameBytes: number) {}

  push (data: Uint8Array): void {
    if (data.byteLength === 0) return
    this.chunks.push(data)
    this.buffered += data.byteLength
  }

  /** The next whole frame body, or undefined until more bytes arrive. */
  next (): Uint8Array | undefined {
    const prefix = this.peekLength()
    if (prefix === undefined || this.buffered - prefix.bytes < prefix.length) return undefined
    this.take(prefix.bytes)
    return this.take(prefix.length)
  }

  private peekLength (): { length: number, bytes: number } | undefined {
    let length = 0
    let scale = 1
    let bytes = 0
    for (let c = 0; c < this.chunks.length; c++) {
      const buf = this.chunks[c]
      for (let i = c === 0 ? this.offset : 0; i < buf.byteLength; i++) {
        const b = buf[i]
        bytes++
        length += (b & 0x7f) * scale
        // the value read so far is a lower bound, so an oversized frame is refused before
        // a single byte of its body is buffered
        if (length > this.maxFrameBytes) {
          const size = b < 0x80 ? String(length) : `more than ${length}`
          throw new VgridError('ERR_MESSAGE_TOO_LARGE', `a frame of ${size} bytes is past the limit of ${this.maxFrameBytes}`)
        }
        if (b < 0x80) return { length, bytes }
        if (bytes >= MAX_VARINT_BYTES) throw new VgridError('ERR_BAD_MESSAGE', 'malformed message: frame length prefix too long')
        scale *= 0x80
      }
    }
    return undefined
  }

  private take (n: number): Uint8Array {
    this.buffered -= n
    const head = this.chunks[0]
    if (head !== undefined && head.byteLength - this.offset >= n) {
      const out = head.subarray(this.offset, this.offset + n)
      this.offset += n
      if (this.offset === head.byteLength) { this.chunks.shift(); this.offset = 0 }
      return out
    }
    const out = new Uint8Array(n)
    let filled = 0
    while (filled < n) {
      const buf = this.chunks[0]
      const part = Math.min(n - filled, buf.byteLength - this.offset)
      out.set(buf.subarray(this.offset, this.offset + part), filled)
      filled += part
      this.offset += part
      if (this.offset === buf.byteLength) { this.chunks.shift(); this.offset = 0 }
    }
    return out
  }
}

interface Waiter { resolve: (v: unknown) => void, reject: (e: Error) => void }

export interface StreamChannelOptions {
  maxFrameBytes: number
  log: Logger
  /** Named in error messages. */
  remotePeer: string
}

export function streamChannel (stream: Stream, opts: StreamChannelOptions): FrameChannel {
  const { maxFrameBytes, log, remotePeer } = opts
  const reader = new FrameReader(maxFrameBytes)
  const queue: Array<{ msg: unknown, bytes: number }> = []
  let queuedBytes = 0
  let waiter: Waiter | undefined
  let ended = false
  let endError: Error | undefined
  let closed = false
  let writeTail: Promise<void> = Promise.resolve()

  const lost = (why: string): VgridError => new VgridError('ERR_PEER_LOST', `the stream to ${remotePeer.slice(-8)} ${why}`)

  const end = (err?: Error): void => {
    if (ended) return
    ended = true
    endError = err
    const w = waiter
    waiter = undefined
    if (w !== undefined) {
      if (err !== undefined) w.reject(err)
      else w.resolve(undefined)
    }
  }

  const fail = (err: Error): void => {
    log('channel %s failed: %s', stream.id, err.message)
    end(err)
    closed = true
    stream.abort(err)
  }

  const paused = (): boolean => stream.readStatus === 'paused'
  const resume = (): void => {
    // throws only when the read side already closed, and then there is nothing to resume
    try { stream.resume() } catch {}
  }
  const overHighWater = (): boolean => queue.length >= RECV_HIGH_WATER_MESSAGES || queuedBytes >= RECV_HIGH_WATER_BYTES

  const onMessage = (evt: StreamMessageEvent): void => {
    if (ended) return
    const data = evt.data
    if (data instanceof Uint8Array) reader.push(data)
    else for (const buf of data) reader.push(buf)
    try {
      for (let body = reader.next(); body !== undefined; body = reader.next()) {
        const msg = decodeBody(body)
        if (waiter !== undefined) {
          const w = waiter
          waiter = undefined
          w.resolve(msg)
        } else {
          queue.push({ msg, bytes: body.byteLength })
          queuedBytes += body.byteLength
        }
      }
    } catch (err) {
      fail(err as Error)
      return
    }
    if (overHighWater() && stream.readStatus === 'readable') {
      try { stream.pause() } catch {}
    }
  }

  stream.addEventListener('message', onMessage)
  // 'end' comes after the last 'message', even when data waited in a paused stream
  stream.addEventListener('end', () => {
    // a reset or abort also ends the readable side, just before its 'close' event with the
    // error: leave it to that handler, so the reader sees the failure, not a clean end
    if (stream.status === 'reset' || stream.status === 'aborted') return
    if (reader.buffered > 0) end(new VgridError('ERR_BAD_MESSAGE', 'malformed message: the stream ended inside a frame'))
    else end()
  })
  stream.addEventListener('close', (evt: StreamCloseEvent) => {
    closed = true
    // ended already (destroyed here, or read to its end): no reader is left to tell
    if (evt.error === undefined || ended) return
    if (evt.local === true && evt.error instanceof VgridError) end(evt.error)
    else end(lost(evt.local === true ? `failed (${evt.error.message})` : 'was reset by the peer'))
  })

  const waitFor = async (event: 'drain' | 'idle'): Promise<void> => {
    await new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        stream.removeEventListener(event, onEvent)
        stream.removeEventListener('close', onClose)
      }
      const onEvent = (): void => { cleanup(); resolve() }
      // a closing stream reports an Event, not an Error: make it one a caller can act on
      const onClose = (): void => { cleanup(); reject(lost('closed while sending')) }
      stream.addEventListener(event, onEvent)
      stream.addEventListener('close', onClose)
    })
  }

  /**
   * Until the stream takes more. 'drain' alone is not enough: the muxer sends it to every
   * stream of the connection whenever the socket drains, also to a stream whose own send
   * window is spent, and each such drain let one more message into the stream's write
   * buffer. With the socket draining often (no pnet cipher slowing the connection), a sender
   * ran 44 MiB ahead of a slow reader instead of ~6. So after a drain, while the stream still
   * holds unsent bytes, wait for it to send them all ('idle', after the peer grants window).
   */
  const waitDrain = async (): Promise<void> => {
    await waitFor('drain')
    // the stream's own drain handler sends what it can in a microtask queued before ours
    await Promise.resolve()
    while (stream.writeBufferLength > 0 && stream.status === 'open') await waitFor('idle')
  }

  const writeAll = async (pieces: Uint8Array[]): Promise<void> => {
    for (const piece of pieces) {
      if (stream.status !== 'open' || stream.writeStatus !== 'writable') throw lost('is closed')
      let more: boolean
      try {
        more = stream.send(piece)
      } catch (err) {
        throw lost(`is closed (${(err as Error).message})`)
      }
      if (!more) await waitDrain()
    }
  }

  const recv = async (): Promise<unknown> => {
    const item = queue.shift()
    if (item !== undefined) {
      queuedBytes -= item.bytes
      if (paused() && queue.length < RECV_HIGH_WATER_MESSAGES / 2 && queuedBytes < RECV_HIGH_WATER_BYTES / 2) resume()
      return item.msg
    }
    if (ended) {
      if (endError !== undefined) throw endError
      return undefined
    }
    if (waiter !== undefined) throw new Error('concurrent recv() on one channel')
    if (paused()) {
      // resuming dispatches what waited in the stream at once, into the queue
      resume()
      if (queue.length > 0 || ended) return await recv()
    }
    return await new Promise((resolve, reject) => { waiter = { resolve, reject } })
  }

  return {
    get closed () { return closed || stream.status !== 'open' },

    async send (msg) {
      if (closed) throw lost('is closed')
      const body = encode(msg)
      if (body.byteLength > maxFrameBytes) {
        throw new VgridError('ERR_MESSAGE_TOO_LARGE', `a message of ${body.byteLength} bytes is past the limit of ${maxFrameBytes}`)
      }
      const prefix = encodeVarint(body.byteLength)
      let pieces: Uint8Array[]
      if (prefix.byteLength + body.byteLength <= MAX_WRITE_BYTES) {
        const frame = new Uint8Array(prefix.byteLength + body.byteLength)
        frame.set(prefix)
        frame.set(body, prefix.byteLength)
        pieces = [frame]
      } else {
        pieces = [prefix]
        for (let off = 0; off < body.byteLength; off += MAX_WRITE_BYTES) pieces.push(body.subarray(off, off + MAX_WRITE_BYTES))
      }
      // concurrent sends must not interleave the pieces of their frames
      const done = writeTail.then(async () => { await writeAll(pieces) })
      writeTail = done.catch(() => {})
      await done
    },

    recv,

    async close () {
      if (closed) return
      closed = true
      await writeTail
      try {
        await stream.close()
      } catch (err) {
        // the stream closed under us: nothing left to flush
        log('close of channel %s: %s', stream.id, (err as Error)?.message ?? err)
      }
    },

    destroy (err) {
      closed = true
      end(err)
      stream.abort(err ?? destroyedError())
    }
  }
}

/**
 * The reason a channel destroyed without one gives its stream, made without a stack: every
 * exec stream of a submitter ends this way, thousands a second in a fan-out, and nothing
 * reads where it was made.
 */
function destroyedError (): Error {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return new Error('channel destroyed')
  } finally {
    Error.stackTraceLimit = limit
  }
}
