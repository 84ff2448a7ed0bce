/** The owner policy's fields in an advertisement: optional (older members do not send them), and checked. */
import { describe, expect, it } from 'vitest'
import { parsePeerAd, type PeerAd } from '../../src/grid/index.js'
import { fakeDescription } from './harness.js'

const ID = '12D3KooWGRYZDHBembyGJQqQ6WgLqJWsGswkrU2e3YDAzrBZeJuL'

function ad (offer: Record<string, unknown> = {}, load: Record<string, unknown> = {}): any {
  const d = fakeDescription('node-a')
  return { v: 1, peer: ID, seq: 1, startedAt: 1, addrs: [], version: '0.1.0', ...d, offer: { ...d.offer, ...offer }, load: { ...d.load, ...load } }
}

describe('policy fields of an advertisement', () => {
  it('are absent from an ad without them', () => {
    const p: PeerAd = parsePeerAd(ad())
    expect(p.offer.maxTasks).toBeUndefined()
    expect(p.offer.onlyWhenIdle).toBeUndefined()
    expect(p.load.ownerBusy).toBeUndefined()
  })

  it('carry who holds each busy GPU', () => {
    const use = [{ index: 1, task: '0123456789abcdef', who: 'alice@ws1' }]
    expect(parsePeerAd(ad({}, { gpuUse: use })).load.gpuUse).toEqual(use)
  })

  it('come through when set', () => {
    const p = parsePeerAd(ad({ maxTasks: 4, onlyWhenIdle: true }, { ownerBusy: true }))
    expect(p.offer).toMatchObject({ maxTasks: 4, onlyWhenIdle: true })
    expect(p.load.ownerBusy).toBe(true)
    // false is the same as absent
    const q = parsePeerAd(ad({ onlyWhenIdle: false }, { ownerBusy: false }))
    expect(q.offer.onlyWhenIdle).toBeUndefined()
    expect(q.load.ownerBusy).toBeUndefined()
  })

  it('say whether it is paused or draining; false is the same as absent', () => {
    expect(parsePeerAd(ad({}, { paused: true })).load).toMatchObject({ paused: true })
    expect(parsePeerAd(ad({}, { draining: true })).load).toMatchObject({ draining: true })
    const q = parsePeerAd(ad({}, { paused: false, draining: false }))
    expect(q.load.paused).toBeUndefined()
    expect(q.load.draining).toBeUndefined()
  })

  it('carry the members whose commands it takes (--accept-from)', () => {
    const ids = ['12D3KooWMvBVSe685eBfT9D3eacBD7kePkeWDRxXMsuEsFfJU1xk']
    expect(parsePeerAd(ad({ acceptFrom: ids })).offer.acceptFrom).toEqual(ids)
  })

  it.each([
    [{ acceptFrom: 'all' }, {}, /offer.acceptFrom/],
    [{ acceptFrom: ['not a peer id'] }, {}, /offer.acceptFrom/],
    [{ acceptFrom: Array(257).fill('12D3KooWMvBVSe685eBfT9D3eacBD7kePkeWDRxXMsuEsFfJU1xk') }, {}, /offer.acceptFrom/],
    [{ maxTasks: 0 }, {}, /offer.maxTasks/],
    [{ maxTasks: 1.5 }, {}, /offer.maxTasks/],
    [{ maxTasks: '4' }, {}, /offer.maxTasks/],
    [{ onlyWhenIdle: 'yes' }, {}, /offer.onlyWhenIdle/],
    [{}, { ownerBusy: 1 }, /load.ownerBusy/],
    [{}, { paused: 'yes' }, /load.paused/],
    [{}, { draining: 1 }, /load.draining/],
    [{}, { gpuUse: {} }, /load.gpuUse/],
    [{}, { gpuUse: Array(65).fill({ index: 0, task: 'a', who: 'b' }) }, /load.gpuUse/],
    [{}, { gpuUse: [{ index: -1, task: 'a', who: 'b' }] }, /load.gpuUse.index/],
    [{}, { gpuUse: [{ index: 0, task: 'x'.repeat(17), who: 'b' }] }, /load.gpuUse.task/],
    [{}, { gpuUse: [{ index: 0, task: 'a', who: 7 }] }, /load.gpuUse.who/]
  ])('refuses offer %j load %j', (offer, load, message) => {
    expect(() => parsePeerAd(ad(offer, load))).toThrow(message)
  })
})
