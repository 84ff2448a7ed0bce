/**
 * The discrete-event core: a clock and a binary heap of pending actions, ordered by time and,
 * at equal times, by the order they were scheduled (so a run is reproducible).
 */

interface Entry {
  t: number
  seq: number
  fn: () => void
}

export class Scheduler {
  /** Simulated milliseconds. */
  now = 0
  /** Actions run so far. */
  events = 0
  private readonly heap: Entry[] = []
  private seq = 0

  /** Runs `fn` at simulated time `t` (never before now). */
  at (t: number, fn: () => void): void {
    const e: Entry = { t: Math.max(t, this.now), seq: this.seq++, fn }
    const h = this.heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(e, h[p])) break
      h[i] = h[p]
      i = p
    }
    h[i] = e
  }

  after (ms: number, fn: () => void): void {
    this.at(this.now + ms, fn)
  }

  get pending (): number {
    return this.heap.length
  }

  /** Runs actions in time order until none is left; `afterEach` runs after every one. */
  run (afterEach?: () => void): void {
    for (let e = this.pop(); e !== undefined; e = this.pop()) {
      this.now = e.t
      this.events++
      e.fn()
      afterEach?.()
    }
  }

  private pop (): Entry | undefined {
    const h = this.heap
    const top = h[0]
    const last = h.pop()
    if (top === undefined || last === undefined || h.length === 0) return top
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= h.length) break
      const r = l + 1
      const c = r < h.length && before(h[r], h[l]) ? r : l
      if (!before(h[c], last)) break
      h[i] = h[c]
      i = c
    }
    h[i] = last
    return top
  }
}

function before (a: Entry, b: Entry): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq)
}
