/**
 * A client socket's reads go straight into one buffer of ours (net.connect's `onread`), one
 * after the other, so a sealed record arrives whole in place: no buffer allocated per read
 * and no join of a record's pieces. Node's own reads give a new 64 KiB buffer each, and a
 * data plane record of 256 KiB came in four or more that were then copied into one
 * (`perf` of a puller's thread: 6 % memmove, 3 % malloc and free).
 *
 * The consumer is given the bytes not yet taken, as a view that is valid only during the
 * call, and says how many it took: it must copy what it keeps (a sealed channel's cipher
 * writes what it opens into a new buffer). What it leaves stays for the next read; when too
 * little room is left behind it, it moves to the front, and a record bigger than the buffer
 * makes it grow (the consumer refuses records past its cap before waiting for them).
 */

/** The buffer a connection starts with: a few records. */
export const READ_RING_BYTES = 1024 * 1024
/** A read is given at least this much room; less, and what is left moves to the front. */
const MIN_READ_BYTES = 64 * 1024

/** Takes what it can of `data` (a view valid only during the call); returns how many bytes it took. */
export type RingConsumer = (data: Buffer) => number

export class ReadRing {
  private buf: Buffer
  private start = 0
  private end = 0
  private consumer: RingConsumer | undefined
  /** For net.connect's `onread` (a callback that returns false pauses the socket). */
  readonly onread: { buffer: () => Buffer, callback: (n: number) => boolean }

  constructor (size = READ_RING_BYTES) {
    this.buf = Buffer.allocUnsafe(size)
    this.onread = {
      buffer: () => this.room(),
      callback: (n) => { this.filled(n); return true }
    }
  }

  /** Bytes read and not taken yet. */
  get unread (): number {
    return this.end - this.start
  }

  /** From now on `consumer` takes what arrives, beginning with what is here already. */
  consume (consumer: RingConsumer): void {
    this.consumer = consumer
    this.feed()
  }

  /** Nobody takes what arrives until the next `consume`: it stays here. */
  detach (): void {
    this.consumer = undefined
  }

  private filled (n: number): void {
    this.end += n
    this.feed()
  }

  private feed (): void {
    if (this.consumer === undefined || this.end === this.start) return
    const took = this.consumer(this.buf.subarray(this.start, this.end))
    this.start += took
    if (this.start === this.end) this.start = this.end = 0
  }

  /** Where the next read goes: behind what is there, with at least MIN_READ_BYTES of room. */
  private room (): Buffer {
    if (this.buf.byteLength - this.end < MIN_READ_BYTES) {
      const rest = this.end - this.start
      // Moved to the front when that frees enough room; else (one record fills the buffer) a bigger buffer.
      const to = this.buf.byteLength - rest >= MIN_READ_BYTES ? this.buf : Buffer.allocUnsafe(this.buf.byteLength * 2)
      this.buf.copy(to, 0, this.start, this.end)
      this.buf = to
      this.start = 0
      this.end = rest
    }
    return this.buf.subarray(this.end)
  }
}
