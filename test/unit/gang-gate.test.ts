/** A gang's shards start together or not at all: the gate between their claims and their go. */
import { describe, it, expect } from 'vitest'
import { GangGate } from '../../src/agent/claim.js'

describe('GangGate', () => {
  it('lets every shard go once all hold their claims', async () => {
    const gate = new GangGate(3)
    const held = [gate.seat(0).hold(), gate.seat(1).hold()]
    let settled = false
    void Promise.all(held).then(() => { settled = true })
    await new Promise((resolve) => setImmediate(resolve))
    expect(settled).toBe(false)
    const last = gate.seat(2).hold()
    expect(await Promise.all([...held, last])).toEqual([true, true, true])
    // Past the decision, a late fail (a shard's run ending) changes nothing.
    gate.seat(1).fail()
    expect(await gate.seat(0).hold()).toBe(true)
  })

  it('releases every shard when one cannot hold its claim', async () => {
    const gate = new GangGate(3)
    const held = [gate.seat(0).hold(), gate.seat(2).hold()]
    gate.seat(1).fail()
    expect(await Promise.all(held)).toEqual([false, false])
    expect(await gate.seat(1).hold()).toBe(false)
  })

  it('gives up on a shard that never answers, well inside the lease of the claims', async () => {
    const gate = new GangGate(2, 50)
    const t0 = Date.now()
    expect(await gate.seat(0).hold()).toBe(false)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40)
  })

  it('counts a shard once however often it says it holds', async () => {
    const gate = new GangGate(2, 200)
    const a = gate.seat(0).hold()
    const again = gate.seat(0).hold()
    expect(await Promise.all([a, again])).toEqual([false, false])
  })
})
