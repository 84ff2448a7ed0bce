/**
 * The order in which this agent's runs that wait for capacity try again (DESIGN §2: queued
 * runs start in submission order per submitter, with no starvation). A run gets in line when
 * it finds no capacity, or when it arrives while runs it must not overtake are in line.
 *
 * - Runs of one request shape (cores, GPUs, model…) try in submission order: only the oldest
 *   waiting run of a shape tries, so a freed core goes to the first in line, and a view
 *   change wakes one run per shape rather than all of them.
 * - Shapes do not block each other (a run wanting 8 GPUs does not hold up one wanting a
 *   core), until the oldest waiting run has waited AGE_LIMIT_MS: then younger runs of other
 *   shapes hold back until it is placed, so what frees up goes to it instead of being taken,
 *   one core at a time, by a stream of smaller runs.
 */
export const AGE_LIMIT_MS = 30_000

export interface QueueTicket {
  readonly shape: string
  readonly since: number
}

export class RunQueue {
  private readonly waiting: QueueTicket[] = []
  private readonly changed = new Set<() => void>()

  constructor (private readonly now: () => number = Date.now, private readonly ageLimitMs = AGE_LIMIT_MS) {}

  /** A run joins the line when it first finds no capacity. */
  join (shape: string): QueueTicket {
    const t = { shape, since: this.now() }
    this.waiting.push(t)
    return t
  }

  /** It was placed, or gave up: the next in line may try. */
  leave (t: QueueTicket): void {
    const i = this.waiting.indexOf(t)
    if (i < 0) return
    this.waiting.splice(i, 1)
    for (const fn of [...this.changed]) fn()
  }

  /**
   * Whether a run arriving now must get in line instead of trying at once: a run of its shape
   * already waits, or the oldest waiting run has waited too long.
   */
  mustWait (shape: string): boolean {
    const oldest = this.waiting[0]
    if (oldest === undefined) return false
    return this.waiting.some((w) => w.shape === shape) || this.now() - oldest.since >= this.ageLimitMs
  }

  /** Whether the run may try to be placed now. */
  mayTry (t: QueueTicket): boolean {
    const first = this.waiting.find((w) => w.shape === t.shape)
    if (first !== t) return false
    const oldest = this.waiting[0]
    if (oldest === undefined || oldest === t || oldest.shape === t.shape) return true
    return this.now() - oldest.since < this.ageLimitMs
  }

  /** Calls `fn` when a run leaves the line; returns the unsubscribe. */
  onChange (fn: () => void): () => void {
    this.changed.add(fn)
    return () => { this.changed.delete(fn) }
  }

  get length (): number {
    return this.waiting.length
  }
}

/**
 * What makes two runs compete for the same members: the request without the command (and
 * the member it was pinned to with --on, if any).
 */
export function requestShape (spec: object, on?: string): string {
  const { argv: _a, env: _e, cwd: _c, tty: _t, ...request } = spec as Record<string, unknown>
  return JSON.stringify([on ?? null, request])
}
