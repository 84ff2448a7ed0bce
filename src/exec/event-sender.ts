/**
 * Sends a session's events in order, one at a time, waiting on the channel for backpressure.
 * A failed send means the submitter is gone: the failure is reported once and later events
 * are dropped, so the command can be killed and drained without anyone waiting on a dead
 * channel.
 */
import type { FrameChannel } from '../common/channel.js'
import { MAX_DATA_CHUNK_BYTES, type ExecEvent } from '../protocol/session.js'

export class EventSender {
  private tail: Promise<void> = Promise.resolve()
  private failure: Error | undefined

  constructor (private readonly channel: FrameChannel, private readonly onFail: (err: Error) => void) {}

  get failed (): boolean {
    return this.failure !== undefined
  }

  /** Resolves when this event has been sent (or dropped). Never rejects. */
  send (ev: ExecEvent): Promise<void> {
    this.tail = this.tail.then(async () => {
      if (this.failure !== undefined) return
      try {
        await this.channel.send(ev)
      } catch (err) {
        this.failure = err as Error
        this.onFail(this.failure)
      }
    })
    return this.tail
  }

  /** Output in chunks of at most MAX_DATA_CHUNK_BYTES; resolves when the last one is sent. */
  out (fd: 1 | 2, data: Uint8Array): Promise<void> {
    if (data.byteLength <= MAX_DATA_CHUNK_BYTES) return this.send({ t: 'out', fd, data })
    let last = this.tail
    for (let off = 0; off < data.byteLength; off += MAX_DATA_CHUNK_BYTES) {
      last = this.send({ t: 'out', fd, data: data.subarray(off, off + MAX_DATA_CHUNK_BYTES) })
    }
    return last
  }

  /** Resolves when everything handed over so far has been sent or dropped. */
  idle (): Promise<void> {
    return this.tail
  }
}
