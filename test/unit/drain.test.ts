/** The drain's count and its followers (agent/drain.ts), without an agent. */
import { describe, it, expect } from 'vitest'
import { Drain, WatchedSet, type DrainCount, type DrainEvent } from '../../src/agent/drain.js'

function drainOf (count: DrainCount): { drain: Drain, count: DrainCount, events: DrainEvent[], drained: () => number } {
  let n = 0
  const drain = new Drain({ count: () => ({ ...count }), drained: () => { n++ } })
  const events: DrainEvent[] = []
  drain.follow((e) => { events.push(e) })
  return { drain, count, events, drained: () => n }
}

describe('Drain', () => {
  it('tells each change of what runs, then stops once, when nothing does', () => {
    const d = drainOf({ guests: 2, others: 1 })
    d.drain.start()
    d.drain.check() // nothing changed: nothing told
    d.count.guests = 1
    d.drain.check()
    d.count.others = 0
    d.count.guests = 0
    d.drain.check()
    d.drain.check()
    expect(d.events).toEqual([
      { t: 'count', count: { guests: 2, others: 1 } },
      { t: 'count', count: { guests: 1, others: 1 } },
      { t: 'count', count: { guests: 0, others: 0 } },
      { t: 'done' }
    ])
    expect(d.drained()).toBe(1)
    expect(d.drain.done).toBe(true)
  })

  it('with nothing running, stops at once; a late follower hears it is done', () => {
    const d = drainOf({ guests: 0, others: 0 })
    d.drain.start()
    expect(d.drained()).toBe(1)
    const late: DrainEvent[] = []
    d.drain.follow((e) => { late.push(e) })
    expect(late).toEqual([{ t: 'done' }])
  })

  it('a follower that joins starts from the count now; one that left hears nothing; cancel ends it', () => {
    const d = drainOf({ guests: 1, others: 0 })
    d.drain.start()
    const second: DrainEvent[] = []
    const unfollow = d.drain.follow((e) => { second.push(e) })
    expect(second).toEqual([{ t: 'count', count: { guests: 1, others: 0 } }])
    unfollow()
    d.drain.cancel()
    expect(d.events.at(-1)).toEqual({ t: 'cancelled' })
    expect(second).toHaveLength(1)
    expect(d.drain.draining).toBe(false)
    d.count.guests = 0
    d.drain.check()
    expect(d.drained()).toBe(0)
  })

  it('is not started by a check, only by start', () => {
    const d = drainOf({ guests: 0, others: 0 })
    d.drain.check()
    expect(d.drained()).toBe(0)
    expect(d.events).toEqual([])
  })
})

describe('WatchedSet', () => {
  it('says when something was added or removed, not when nothing changed', () => {
    let changes = 0
    const s = new WatchedSet<string>(() => { changes++ })
    s.add('a')
    s.delete('a')
    s.delete('a')
    expect(changes).toBe(2)
    expect(s.size).toBe(0)
  })
})
