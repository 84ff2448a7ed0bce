/**
 * `vgrid agent stop --drain`: the agent takes no new command (the owner policy closes its
 * ledger and advertises it as draining) and stops once the commands running here have
 * ended. This keeps the count and tells whoever follows it: each change of the count, then
 * that it is done (the agent stops) or cancelled (`vgrid agent set --resume`). A follower that
 * goes away (the owner's Ctrl-C) changes nothing: the agent drains on.
 */

/** What still runs here. */
export interface DrainCount {
  /** Commands other members sent, from the claim until their outputs and exit have gone back. */
  guests: number
  /** Other commands holding cores here: this machine's own, and guests' sub-tasks. */
  others: number
}

export type DrainEvent = { t: 'count', count: DrainCount } | { t: 'done' } | { t: 'cancelled' }

export interface DrainInit {
  count: () => DrainCount
  /** Nothing runs any more: stop the agent. Called once. */
  drained: () => void
}

export class Drain {
  private state: 'idle' | 'draining' | 'done' = 'idle'
  private last = ''
  private readonly followers = new Set<(e: DrainEvent) => void>()

  constructor (private readonly init: DrainInit) {}

  get draining (): boolean {
    return this.state === 'draining'
  }

  get done (): boolean {
    return this.state === 'done'
  }

  /** Starts draining (again asking while draining only follows). */
  start (): void {
    if (this.state !== 'idle') return
    this.state = 'draining'
    this.last = ''
    this.check()
  }

  /** The drain is called off: the agent stays and lends again. */
  cancel (): void {
    if (this.state !== 'draining') return
    this.state = 'idle'
    this.emit({ t: 'cancelled' })
  }

  /** Something that runs here started or ended: tell the followers, and stop when nothing is left. */
  check (): void {
    if (this.state !== 'draining') return
    const count = this.init.count()
    const key = `${count.guests}/${count.others}`
    if (key !== this.last) {
      this.last = key
      this.emit({ t: 'count', count })
    }
    if (count.guests + count.others > 0) return
    this.state = 'done'
    this.emit({ t: 'done' })
    this.init.drained()
  }

  /** Hears every event from now on, starting with the count now; returns the unsubscribe. */
  follow (fn: (e: DrainEvent) => void): () => void {
    this.followers.add(fn)
    if (this.state === 'draining') fn({ t: 'count', count: this.init.count() })
    else if (this.state === 'done') fn({ t: 'done' })
    return () => { this.followers.delete(fn) }
  }

  private emit (e: DrainEvent): void {
    for (const fn of [...this.followers]) fn(e)
  }
}

/** A Set that says when it changed: the attempts of other members' commands running here. */
export class WatchedSet<T> extends Set<T> {
  constructor (private readonly changed: () => void) {
    super()
  }

  override add (v: T): this {
    super.add(v)
    this.changed()
    return this
  }

  override delete (v: T): boolean {
    const had = super.delete(v)
    if (had) this.changed()
    return had
  }
}
