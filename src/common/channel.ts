/**
 * A FrameChannel carries whole CBOR messages in both directions with backpressure: `send`
 * resolves once the transport can take more, `recv` pulls the next message (undefined at the
 * end). The control socket, the in-process path to the local executor and libp2p streams all
 * look like this, so the code that relays a command's events does not care which it has.
 *
 * On a Node socket each frame is a 4-byte big-endian length and a CBOR body, capped at
 * `maxFrameBytes`; a frame past the cap or a body that does not decode ends the channel with
 * ERR_MESSAGE_TOO_LARGE / ERR_BAD_MESSAGE.
 */
import type { Socket } from 'node:net'
import { encode, decode, Token, Tokenizer, Type } from 'cborg'
import { VgridError } from './errors.js'
import type { ReadRing } from './read-ring.js'

/**
 * `In`: what `recv` gives, `Out`: what `send` takes. Both default to unknown, as on a socket,
 * where what arrives must be parsed; an in-process channel whose ends are typed says so.
 */
export interface FrameChannel<In = unknown, Out = unknown> {
  send (msg: Out): Promise<void>
  recv (): Promise<In | undefined>
  /** Ends our side gracefully once everything sent has been written. */
  close (): Promise<void>
  /** Drops the channel at once; pending and later recv() calls reject with `err` (or end). */
  destroy (err?: Error): void
  readonly closed: boolean
}

/** Default cap on one frame: big enough for a 1 MiB output chunk plus headers. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024
/** How many decoded messages may wait unread before the socket is paused. */
const RECV_HIGH_WATER = 64

export function encodeFrame (msg: unknown): Uint8Array {
  const body = encode(msg)
  const out = new Uint8Array(4 + body.byteLength)
  new DataView(out.buffer).setUint32(0, body.byteLength)
  out.set(body, 4)
  return out
}

/** Byte strings at least this long are handed out as views of the frame, not copies. */
const VIEW_BYTES_FROM = 4096
const DECODE_OPTIONS = { rejectDuplicateMapKeys: true }

/**
 * cborg's own tokenizer copies every byte string out of the frame. A long one (a synced
 * chunk, a slice of output) is handed out as a view instead: the frame is ours alone and
 * never written to, and a copy per chunk cost the receiving side a tenth of its time.
 */
class ViewTokenizer extends Tokenizer {
  private readonly bytes: Uint8Array

  constructor (body: Uint8Array) {
    // a plain view, so byte strings come out as Uint8Array whether the frame is a Buffer or not
    const bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength)
    super(bytes, DECODE_OPTIONS)
    this.bytes = bytes
  }

  override next (): Token {
    const data = this.bytes
    const pos = this.pos()
    const first = data[pos]!
    if (first >= 0x59 && first <= 0x5a) {
      const prefix = first === 0x59 ? 3 : 5
      if (pos + prefix <= data.length) {
        const view = new DataView(data.buffer, data.byteOffset + pos + 1, prefix - 1)
        const len = prefix === 3 ? view.getUint16(0) : view.getUint32(0)
        if (len >= VIEW_BYTES_FROM && pos + prefix + len <= data.length) {
          // cborg's Tokenizer keeps its position in `_pos`; its own next() advances it the same way
          (this as unknown as { _pos: number })._pos += prefix + len
          return new Token(Type.bytes, data.subarray(pos + prefix, pos + prefix + len), prefix + len)
        }
      }
    }
    return super.next()
  }
}

export function decodeBody (body: Uint8Array): unknown {
  try {
    return decode(body, { ...DECODE_OPTIONS, tokenizer: new ViewTokenizer(body) })
  } catch (err) {
    throw new VgridError('ERR_BAD_MESSAGE', `malformed message: ${(err as Error).message}`)
  }
}

interface Waiter { resolve: (v: unknown | undefined) => void, reject: (e: Error) => void }

/** Queue + waiters shared by the socket and in-memory channels (and the data plane's threads' connections). */
export class Inbox {
  readonly items: unknown[] = []
  private waiter: Waiter | undefined
  ended = false
  error: Error | undefined

  push (msg: unknown): void {
    if (this.waiter !== undefined) {
      const w = this.waiter
      this.waiter = undefined
      w.resolve(msg)
    } else {
      this.items.push(msg)
    }
  }

  end (err?: Error): void {
    if (this.ended) return
    this.ended = true
    this.error = err
    const w = this.waiter
    this.waiter = undefined
    if (w !== undefined) {
      if (err !== undefined) w.reject(err)
      else w.resolve(undefined)
    }
  }

  async next (): Promise<unknown | undefined> {
    if (this.items.length > 0) return this.items.shift()
    if (this.ended) {
      if (this.error !== undefined) throw this.error
      return undefined
    }
    if (this.waiter !== undefined) throw new Error('concurrent recv() on one channel')
    return await new Promise((resolve, reject) => { this.waiter = { resolve, reject } })
  }
}

/** A connection's cipher (the data plane's, fs-sync/plane/cipher.ts): seals what we send, opens what we get. */
export interface FrameCipher {
  /** Ciphertext and tag, to be written one after the other; a body given in pieces is sealed as their concatenation. */
  seal: (body: Uint8Array | readonly Uint8Array[]) => Uint8Array[]
  /** What was sealed (a record, with a cipher on a socketChannel); throws ERR_BAD_MESSAGE when it fails its tag. */
  open: (sealed: Uint8Array) => Uint8Array
  /** How many bytes sealing adds (the tag). */
  readonly overhead: number
}

/** Each frame's length prefix. */
export const FRAME_HEAD_BYTES = 4
/**
 * With a cipher, frames travel in sealed records: a record is sealed once this much is
 * queued, or at the end of the event loop's turn, whichever comes first. The provider of a
 * sync sends a reply per chunk, 10,000 of them for as many small files: one cipher, one
 * tag and one write each cost more than their bytes.
 */
export const RECORD_FLUSH_BYTES = 256 * 1024
/**
 * Frames in one record at most: a record is read whole and its frames decoded at once, so
 * one full of empty frames (4 MiB of lengths) would cost ~100× its size in decoded messages.
 * A sender seals a record once it holds this many.
 */
export const MAX_RECORD_FRAMES = 8192
/** Pieces shorter than this are joined before sealing: one cipher call each costs more than the copy. */
const JOIN_BELOW_BYTES = 16 * 1024

/** A FrameChannel on a Node socket, which can also send a body its caller encoded. */
export interface SocketChannel extends FrameChannel {
  /**
   * Sends the CBOR body whose bytes are `pieces`, one after the other, as one frame: a body
   * built around a large byte string (blobReplyPieces) goes out without being copied into
   * one buffer first. The caller vouches that the pieces make one well-formed message.
   */
  sendPieces (pieces: readonly Uint8Array[]): Promise<void>
}

/**
 * `cipher`: frames travel in sealed records (RECORD_FLUSH_BYTES): a length prefix, which
 * says how much to read and is not sealed, then the sealed frames, each with its own length
 * prefix. `maxFrameBytes` then caps a sealed record, and one frame must fit in a record
 * alone. `decode`: how a body becomes a message (decodeBody, or a reader of one frequent
 * message with decodeBody behind it).
 */
export function socketChannel (socket: Socket, maxFrameBytes = MAX_FRAME_BYTES, cipher?: FrameCipher, decode: (body: Uint8Array) => unknown = decodeBody, ring?: ReadRing): SocketChannel {
  // A ring's bytes are overwritten by later reads: only what a cipher opens (a new buffer) may be kept.
  if (ring !== undefined && cipher === undefined) throw new VgridError('ERR_INTERNAL', 'a read ring needs a sealed channel')
  const inbox = new Inbox()
  let pending: Buffer[] = []
  let pendingBytes = 0
  /**
   * Bytes the next frame needs in all (its prefix and body, once the prefix is in): the
   * pieces are joined only then. Joining at every read copied a frame read in k pieces k
   * times (a 256 KiB chunk arrives in four or more).
   */
  let need = 4
  let closed = false

  const fail = (err: Error): void => {
    inbox.end(err)
    closed = true
    socket.destroy()
  }

  /** Decodes the whole frames at the start of `buf`; how many bytes they took (all of it after a failure). */
  const take = (buf: Buffer): number => {
    let off = 0
    need = 4
    while (buf.byteLength - off >= 4) {
      const len = buf.readUInt32BE(off)
      if (len > maxFrameBytes) {
        fail(new VgridError('ERR_MESSAGE_TOO_LARGE', `a frame of ${len} bytes is past the limit of ${maxFrameBytes}`))
        return buf.byteLength
      }
      if (buf.byteLength - off - 4 < len) {
        need = 4 + len
        break
      }
      try {
        const body = buf.subarray(off + 4, off + 4 + len)
        if (cipher === undefined) inbox.push(decode(body))
        else for (const frame of recordFrames(cipher.open(body))) inbox.push(decode(frame))
      } catch (err) {
        fail(err as Error)
        return buf.byteLength
      }
      off += 4 + len
    }
    if (inbox.items.length >= RECV_HIGH_WATER) socket.pause()
    return off
  }

  if (ring !== undefined) {
    ring.consume(take)
  } else {
    socket.on('data', (chunk: Buffer) => {
      pending.push(chunk)
      pendingBytes += chunk.byteLength
      if (pendingBytes < need) return
      const joined = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes)
      const buf = joined.subarray(take(joined))
      pending = buf.byteLength > 0 ? [buf] : []
      pendingBytes = buf.byteLength
    })
  }
  socket.on('end', () => {
    if (pendingBytes > 0 || (ring?.unread ?? 0) > 0) inbox.end(new VgridError('ERR_BAD_MESSAGE', 'the connection ended inside a frame'))
    else inbox.end()
  })
  socket.on('error', (err) => { inbox.end(err) })
  socket.on('close', () => { closed = true; inbox.end() })

  /** Writes one frame with `writeOne` (false: the socket is full); resolves once the socket can take more. */
  const write = async (writeOne: () => boolean): Promise<void> => {
    if (closed || socket.destroyed || !socket.writable) throw new VgridError('ERR_PEER_LOST', 'the connection is closed')
    if (!writeOne()) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => { socket.off('close', onClose); resolve() }
        const onClose = (): void => { socket.off('drain', onDrain); reject(new VgridError('ERR_PEER_LOST', 'the connection closed')) }
        socket.once('drain', onDrain)
        socket.once('close', onClose)
      })
    }
  }

  const records = cipher === undefined ? undefined : new RecordWriter(socket, cipher, maxFrameBytes)
  return {
    get closed () { return closed },
    async send (msg) {
      await write(() => records === undefined ? socket.write(encodeFrame(msg)) : records.add([encode(msg)]))
    },
    async sendPieces (pieces) {
      await write(() => records === undefined ? writeFrame(socket, pieces) : records.add(pieces))
    },
    async recv () {
      const msg = await inbox.next()
      if (inbox.items.length < RECV_HIGH_WATER / 2 && socket.isPaused()) socket.resume()
      return msg
    },
    async close () {
      if (closed) return
      records?.flush()
      await new Promise<void>((resolve) => { socket.end(resolve) })
    },
    destroy (err) {
      closed = true
      records?.drop()
      inbox.end(err)
      socket.destroy()
    }
  }
}

/** The frames of an opened record, as views of it; ERR_BAD_MESSAGE when they do not fill it exactly. */
export function recordFrames (record: Uint8Array): Uint8Array[] {
  const bad = (why: string): VgridError => new VgridError('ERR_BAD_MESSAGE', `malformed record: ${why}`)
  if (record.byteLength === 0) throw bad('no frame in it')
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength)
  const frames: Uint8Array[] = []
  for (let o = 0; o < record.byteLength;) {
    if (frames.length === MAX_RECORD_FRAMES) throw bad(`more than ${MAX_RECORD_FRAMES} frames`)
    if (record.byteLength - o < FRAME_HEAD_BYTES) throw bad('it ends inside a frame\'s length')
    const len = view.getUint32(o)
    o += FRAME_HEAD_BYTES
    if (len > record.byteLength - o) throw bad(`a frame of ${len} bytes where ${record.byteLength - o} are left`)
    frames.push(record.subarray(o, o + len))
    o += len
  }
  return frames
}

/**
 * The sending side of sealed records: frames are queued (their pieces as given, not copied)
 * and sealed together when RECORD_FLUSH_BYTES or MAX_RECORD_FRAMES are queued, when the next
 * frame would not fit, or at the end of this turn of the event loop (setImmediate: after the
 * sender's awaits, so a loop of sends fills one record). A send still waits for the socket
 * to drain whenever it is full, so no more than one record waits here beyond what the
 * socket holds.
 */
class RecordWriter {
  private pieces: Uint8Array[] = []
  private bytes = 0
  private frames = 0
  private scheduled = false
  private dropped = false
  /** The most a record's frames may hold: the cap on a sealed record, less what sealing adds. */
  private readonly maxBytes: number

  constructor (private readonly socket: Socket, private readonly cipher: FrameCipher, maxSealedBytes: number) {
    this.maxBytes = maxSealedBytes - cipher.overhead
  }

  /** Queues one frame; false when the socket is full (wait for 'drain'). */
  add (body: readonly Uint8Array[]): boolean {
    let len = 0
    for (const p of body) len += p.byteLength
    if (FRAME_HEAD_BYTES + len > this.maxBytes) throw new VgridError('ERR_MESSAGE_TOO_LARGE', `a frame of ${len} bytes is past the limit of ${this.maxBytes - FRAME_HEAD_BYTES}`)
    if (this.bytes + FRAME_HEAD_BYTES + len > this.maxBytes) this.flush()
    const head = Buffer.allocUnsafe(FRAME_HEAD_BYTES)
    head.writeUInt32BE(len)
    this.pieces.push(head, ...body)
    this.bytes += FRAME_HEAD_BYTES + len
    if (this.bytes >= RECORD_FLUSH_BYTES || ++this.frames >= MAX_RECORD_FRAMES) return this.flush()
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => { this.scheduled = false; this.flush() })
    }
    return !this.socket.writableNeedDrain
  }

  /** Seals and writes what is queued; false when the socket is full. */
  flush (): boolean {
    if (this.bytes > 0 && !this.dropped && !this.socket.destroyed) {
      const pieces = joinSmall(this.pieces)
      this.pieces = []
      this.bytes = 0
      this.frames = 0
      return writeFrame(this.socket, this.cipher.seal(pieces))
    }
    return !this.socket.writableNeedDrain
  }

  drop (): void {
    this.dropped = true
    this.pieces = []
    this.bytes = 0
    this.frames = 0
  }
}

/** `pieces` with each run of short ones joined into one buffer; long ones stay as they are. */
function joinSmall (pieces: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = []
  let run: Uint8Array[] = []
  let runBytes = 0
  const endRun = (): void => {
    if (run.length === 1) out.push(run[0]!)
    else if (run.length > 1) out.push(Buffer.concat(run, runBytes))
    run = []
    runBytes = 0
  }
  for (const p of pieces) {
    if (p.byteLength >= JOIN_BELOW_BYTES) {
      endRun()
      out.push(p)
    } else {
      run.push(p)
      runBytes += p.byteLength
    }
  }
  endRun()
  return out
}

/** One frame (its length, then its pieces), written without a copy; false when the socket is full. */
function writeFrame (socket: Socket, pieces: readonly Uint8Array[]): boolean {
  let len = 0
  for (const p of pieces) len += p.byteLength
  const head = Buffer.allocUnsafe(4)
  head.writeUInt32BE(len)
  socket.cork()
  socket.write(head)
  let ok = true
  for (const p of pieces) ok = socket.write(p)
  socket.uncork()
  return ok
}

/**
 * Two connected in-process channels. Messages are passed by reference, so each side must
 * treat what it receives as read-only. `send` applies backpressure when the other side has
 * more than `highWater` unread messages.
 */
export function memoryChannelPair (highWater = RECV_HIGH_WATER): [FrameChannel, FrameChannel] {
  const make = (): { inbox: Inbox, drained: Array<() => void>, closed: boolean } => ({ inbox: new Inbox(), drained: [], closed: false })
  const a = make()
  const b = make()
  const side = (me: typeof a, other: typeof a): FrameChannel => ({
    get closed () { return me.closed },
    async send (msg) {
      if (me.closed || other.inbox.ended) throw new VgridError('ERR_PEER_LOST', 'the channel is closed')
      other.inbox.push(msg)
      if (other.inbox.items.length >= highWater) {
        await new Promise<void>((resolve) => { other.drained.push(resolve) })
      }
    },
    async recv () {
      const msg = await me.inbox.next()
      if (me.inbox.items.length < highWater) me.drained.splice(0).forEach((r) => { r() })
      return msg
    },
    async close () {
      me.closed = true
      other.inbox.end()
    },
    destroy (err) {
      me.closed = true
      other.closed = true
      me.inbox.end(err)
      other.inbox.end(err === undefined ? undefined : new VgridError('ERR_PEER_LOST', err.message))
      me.drained.splice(0).forEach((r) => { r() })
      other.drained.splice(0).forEach((r) => { r() })
    }
  })
  return [side(a, b), side(b, a)]
}
