/**
 * Which task a name means (agent/tasks/names.ts): the nearest scope first, the newest in it,
 * and a list instead of a guess when two members' submissions are equally near.
 */
import { describe, it, expect } from 'vitest'
import { offerCandidates, pickNamed, NAME_OFFER_PER_SCOPE, NAME_TIE_MS, type NameCandidate, type NameScope } from '../../src/agent/tasks/names.js'

let n = 0
const sub = (scope: NameScope, created: number, o: { owner?: string, live?: boolean } = {}): NameCandidate =>
  ({ group: `g${n++}`, owner: o.owner ?? 'A', created, live: o.live ?? false, scope })

describe('pickNamed', () => {
  it('takes the nearest scope that has the name, whatever is newer further out', () => {
    const ws = sub('workspace', 1_000)
    const own = sub('own', 50_000)
    const grid = sub('grid', 90_000, { owner: 'B' })
    expect(pickNamed([grid, own, ws])).toEqual({ pick: ws })
    expect(pickNamed([grid, own])).toEqual({ pick: own })
    expect(pickNamed([grid])).toEqual({ pick: grid })
    expect(pickNamed([])).toBeUndefined()
  })

  it('takes the newest of a scope, one member\'s submissions ordered by its clock even a millisecond apart and both running', () => {
    const old = sub('workspace', 10_000, { live: true })
    const fresh = sub('workspace', 10_001, { live: true })
    expect(pickNamed([old, fresh])).toEqual({ pick: fresh })
  })

  it('lists two members\' submissions of the nearest scope created within a second, newest first', () => {
    const a = sub('workspace', 10_000, { owner: 'A' })
    const b = sub('workspace', 10_000 + NAME_TIE_MS - 1, { owner: 'B' })
    expect(pickNamed([a, b, sub('own', 99_000)])).toEqual({ tied: [b, a] })
    // a second apart: the newer wins
    const later = sub('workspace', 10_000 + NAME_TIE_MS, { owner: 'B' })
    expect(pickNamed([a, later])).toEqual({ pick: later })
  })

  it('lists two members\' submissions that both still run, however far apart', () => {
    const a = sub('grid', 10_000, { owner: 'A', live: true })
    const b = sub('grid', 500_000, { owner: 'B', live: true })
    expect(pickNamed([a, b])).toEqual({ tied: [b, a] })
    const done = sub('grid', 10_000, { owner: 'A' })
    expect(pickNamed([done, b])).toEqual({ pick: b })
  })

  it('never ties across scopes', () => {
    const ws = sub('workspace', 10_000, { owner: 'A', live: true })
    const grid = sub('grid', 10_001, { owner: 'B', live: true })
    expect(pickNamed([ws, grid])).toEqual({ pick: ws })
  })
})

describe('offerCandidates', () => {
  it('offers the newest few of each scope, nearest scope first', () => {
    const many = Array.from({ length: 10 }, (_, i) => sub(i % 2 === 0 ? 'workspace' : 'grid', i * 1000))
    const offered = offerCandidates(many)
    expect(offered).toHaveLength(2 * NAME_OFFER_PER_SCOPE)
    expect(offered.map((c) => [c.scope, c.created])).toEqual([['workspace', 8000], ['workspace', 6000], ['grid', 9000], ['grid', 7000]])
  })
})
