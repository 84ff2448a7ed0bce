/**
 * One run of a command on the grid, from the agent that submitted it: a `vrun`, or one attempt
 * of a task. It is placed (placer.ts), then followed until its command's exit (relay.ts, or
 * execute.ts when it runs here). Whoever follows it (the CLI's relay, the task manager, a
 * guest's bookkeeping) subscribes to its typed events with `on`, in the order they happen; a
 * listener's promise holds the next event back, so a slow terminal slows the command's output
 * rather than filling memory. Inputs (stdin, signals, resize, cancel) go in with `input`.
 */
import { memoryChannelPair, type FrameChannel } from '../../common/channel.js'
import type { ExecInput, RunEvent } from '../../protocol/session.js'

export type RunListener = (ev: RunEvent) => void | Promise<void>

/** What the placement and the session code drive: events out, inputs in. */
export type RunSink = FrameChannel<ExecInput, RunEvent>

export class Run {
  private readonly listeners: RunListener[] = []
  private readonly mine: FrameChannel<RunEvent, ExecInput>
  /** The placement's end: it sends the events and reads the inputs. */
  readonly sink: RunSink
  private delivered: Promise<void> | undefined

  constructor (readonly task: string) {
    const [mine, theirs] = memoryChannelPair()
    this.mine = mine as FrameChannel<RunEvent, ExecInput>
    this.sink = theirs as RunSink
  }

  /** Calls `listener` with every event from now on; returns its unsubscribe. */
  on (listener: RunListener): () => void {
    this.listeners.push(listener)
    return () => { const i = this.listeners.indexOf(listener); if (i >= 0) this.listeners.splice(i, 1) }
  }

  /** An input for the command; false when the run is over (or abandoned) and takes none. */
  async input (msg: ExecInput): Promise<boolean> {
    return await this.mine.send(msg).then(() => true, () => false)
  }

  /**
   * Whoever followed the run has gone (a CLI closed its socket): nothing reads its events any
   * more and the command must not outlive it. The placement ends with `err` (ERR_PEER_LOST).
   */
  abandon (err?: Error): void {
    this.mine.destroy(err)
  }

  /** Whether the run was abandoned or its placement has ended. */
  get closed (): boolean {
    return this.sink.closed
  }

  /**
   * Drives the run: `place` places it and follows its session on `sink` (placer.ts). Resolves
   * once it has ended and every event has reached every listener; rejects with why the
   * placement failed (the events up to then delivered first).
   */
  async drive (place: (sink: RunSink) => Promise<void>): Promise<void> {
    this.delivered ??= this.deliver()
    const placing = place(this.sink).then(() => undefined, (err: unknown) => ({ err }))
    // However the placement ended, no event follows: delivery ends after the last one.
    const outcome = await placing
    await this.sink.close().catch(() => {})
    await this.delivered
    if (outcome !== undefined) throw outcome.err
  }

  /** Hands each event to every listener in turn; a listener that throws abandons the run. */
  private async deliver (): Promise<void> {
    for (;;) {
      const ev = await this.mine.recv().catch(() => undefined)
      if (ev === undefined) return
      for (const l of [...this.listeners]) {
        try {
          await l(ev)
        } catch (err) {
          this.abandon(err as Error)
          return
        }
      }
    }
  }
}
