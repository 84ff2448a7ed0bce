/** The view's rules, on a fake clock: ordering of ads, goodbyes, expiry, tombstones. */
import { describe, expect, it } from 'vitest'
import { MemberView } from '../../src/grid/view.js'
import { DEPARTED_MEMORY_MS, advertIntervalMs, memberExpiryMs } from '../../src/grid/constants.js'
import type { PeerAd } from '../../src/grid/index.js'
import { fakeDescription } from './harness.js'

const SELF = '12D3KooWGRYZDHBembyGJQqQ6WgLqJWsGswkrU2e3YDAzrBZeJuL'
const B = '12D3KooWJeXkCCKJRUadmMz3otfWnpfgjmRrXCFoonBkR1KBbe9s'

function ad (peer: string, seq: number, over: Partial<PeerAd> = {}): PeerAd {
  return { v: 1, peer, seq, startedAt: 1000, addrs: [], version: '1', ...fakeDescription(peer.slice(-4)), ...over }
}

function setup (): { view: MemberView, clock: { t: number }, changes: () => number } {
  const clock = { t: 0 }
  const view = new MemberView(SELF, () => clock.t, 15_000)
  let n = 0
  view.onChange(() => { n++ })
  view.setSelf(ad(SELF, 1))
  return { view, clock, changes: () => n }
}

describe('MemberView', () => {
  it('remembers who left, by peer id and host, for DEPARTED_MEMORY_MS or until it is back', () => {
    const { view, clock } = setup()
    view.apply(ad(B, 1))
    expect(view.departed()).toEqual([])
    clock.t = 1000
    view.remove(B)
    clock.t = 41_000
    expect(view.departed()).toEqual([{ peer: B, host: ad(B, 1).resources.host, leftMsAgo: 40_000 }])
    // back: no longer departed
    view.apply(ad(B, 2))
    expect(view.departed()).toEqual([])
    // a goodbye counts too; then it is forgotten after a day
    view.apply(ad(B, 3, { leaving: true }))
    expect(view.departed().map((d) => d.peer)).toEqual([B])
    clock.t += DEPARTED_MEMORY_MS + 1
    expect(view.departed()).toEqual([])
  })

  it('lists self first, then members by freshness, with lastSeenMs at call time', () => {
    const { view, clock } = setup()
    view.apply(ad(B, 1))
    clock.t = 2500
    const snap = view.snapshot()
    expect(snap.map((p) => [p.peer, p.self, p.lastSeenMs])).toEqual([[SELF, true, 0], [B, false, 2500]])
  })

  it('ignores older and duplicate ads; a restart (newer startedAt) wins over a higher seq', () => {
    const { view } = setup()
    expect(view.apply(ad(B, 5))).toBe('joined')
    expect(view.apply(ad(B, 5))).toBe('stale')
    expect(view.apply(ad(B, 4))).toBe('stale')
    expect(view.apply(ad(B, 6))).toBe('refreshed')
    expect(view.apply(ad(B, 1, { startedAt: 2000 }))).toBe('refreshed')
    expect(view.apply(ad(B, 99, { startedAt: 1000 }))).toBe('stale')
  })

  it('fires onChange on join, change and leave, not on a mere refresh', () => {
    const { view, changes } = setup()
    const before = changes()
    view.apply(ad(B, 1))
    view.apply(ad(B, 2))
    expect(changes()).toBe(before + 1)
    view.apply(ad(B, 3, { load: { ...fakeDescription('x').load, running: 3 } }))
    expect(changes()).toBe(before + 2)
    expect(view.apply(ad(B, 4, { leaving: true }))).toBe('left')
    expect(changes()).toBe(before + 3)
  })

  it('drops a member on goodbye, and a stale ad still in flight cannot bring it back', () => {
    const { view } = setup()
    view.apply(ad(B, 10))
    view.apply(ad(B, 11, { leaving: true }))
    expect(view.has(B)).toBe(false)
    expect(view.apply(ad(B, 9))).toBe('stale')
    expect(view.has(B)).toBe(false)
    // the same member restarted is welcome
    expect(view.apply(ad(B, 1, { startedAt: 5000 }))).toBe('joined')
  })

  it('drops a member whose connection closed until it advertises again', () => {
    const { view } = setup()
    view.apply(ad(B, 3))
    expect(view.remove(B)).toBe(true)
    expect(view.apply(ad(B, 3))).toBe('stale')
    expect(view.apply(ad(B, 4))).toBe('joined')
  })

  it('expires members not heard from for the expiry time', () => {
    const { view, clock } = setup()
    view.apply(ad(B, 1))
    clock.t = 15_000
    expect(view.expire()).toEqual([])
    clock.t = 15_001
    expect(view.expire()).toEqual([B])
    expect(view.snapshot()).toHaveLength(1)
  })

  it('gives a member that refreshes less often three of its intervals before it expires', () => {
    const { view, clock } = setup()
    view.apply(ad(B, 1, { every: 12_000 }))
    clock.t = 36_000
    expect(view.expire()).toEqual([])
    clock.t = 37_001
    expect(view.expire()).toEqual([B])
  })

  it('refreshes every second in a small grid and thins out as it grows, up to a cap', () => {
    expect(advertIntervalMs(1)).toBe(1000)
    expect(advertIntervalMs(4)).toBe(1000)
    expect(advertIntervalMs(16)).toBe(4000)
    expect(advertIntervalMs(50)).toBe(12_500)
    expect(advertIntervalMs(1000)).toBe(15_000)
    // so a member receives about four refreshes a second, whatever the size of the grid
    expect(50 / (advertIntervalMs(50) / 1000)).toBe(4)
    // and is never expired sooner than 12 s, nor before three of its intervals
    expect(memberExpiryMs(undefined)).toBe(12_000)
    expect(memberExpiryMs(advertIntervalMs(50))).toBe(38_500)
    // what a member states is clamped: a later version may refresh less often, a hostile one
    // cannot keep itself in the views for hours
    expect(memberExpiryMs(3_600_000)).toBe(46_000)
    expect(memberExpiryMs(0)).toBe(12_000)
  })

  it('ignores ads about itself and survives a throwing listener', () => {
    const { view } = setup()
    expect(view.apply(ad(SELF, 100))).toBe('stale')
    view.onChange(() => { throw new Error('listener bug') })
    expect(view.apply(ad(B, 1))).toBe('joined')
  })
})
