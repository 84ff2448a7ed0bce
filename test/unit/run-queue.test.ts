/** The line of runs waiting for capacity on one agent: order per shape, and aging across shapes. */
import { describe, it, expect } from 'vitest'
import { RunQueue, requestShape } from '../../src/agent/run-queue.js'

describe('RunQueue', () => {
  it('lets only the oldest run of a shape try, and the next when it leaves', () => {
    const q = new RunQueue(() => 0)
    const a = q.join('cpu-1')
    const b = q.join('cpu-1')
    const c = q.join('gpu-1')
    expect([q.mayTry(a), q.mayTry(b), q.mayTry(c)]).toEqual([true, false, true])
    let changes = 0
    const off = q.onChange(() => { changes++ })
    q.leave(a)
    expect(q.mayTry(b)).toBe(true)
    expect(changes).toBe(1)
    q.leave(a) // twice: nothing
    expect(changes).toBe(1)
    off()
    q.leave(b)
    expect(changes).toBe(1)
    expect(q.length).toBe(1)
  })

  it('holds younger runs of other shapes back once the oldest has waited too long', () => {
    let now = 0
    const q = new RunQueue(() => now, 30_000)
    const big = q.join('cpu-8')
    now = 1_000
    const small = q.join('cpu-1')
    expect(q.mayTry(small)).toBe(true)
    now = 31_000
    expect(q.mayTry(small)).toBe(false)
    expect(q.mayTry(big)).toBe(true)
    // A run of the old one's own shape still waits behind it, as always.
    const big2 = q.join('cpu-8')
    expect(q.mayTry(big2)).toBe(false)
    q.leave(big)
    // Now the small one is the oldest, and has waited 30 s too: the new big one waits for it.
    expect(q.mayTry(small)).toBe(true)
    expect(q.mayTry(big2)).toBe(false)
    q.leave(small)
    expect(q.mayTry(big2)).toBe(true)
  })

  it('makes a new run wait only behind runs it must not overtake', () => {
    let now = 0
    const q = new RunQueue(() => now, 30_000)
    expect(q.mustWait('cpu-1')).toBe(false)
    const big = q.join('cpu-8')
    expect(q.mustWait('cpu-8')).toBe(true)
    expect(q.mustWait('cpu-1')).toBe(false)
    now = 30_000
    expect(q.mustWait('cpu-1')).toBe(true)
    q.leave(big)
    expect(q.mustWait('cpu-1')).toBe(false)
  })

  it('names a shape by the request alone, and by the member it is pinned to', () => {
    const spec = { argv: ['a'], env: { X: '1' }, cwd: 'x', cpus: 1, gpus: 0 }
    expect(requestShape(spec)).toBe(requestShape({ ...spec, argv: ['b'], env: {}, cwd: 'y' }))
    expect(requestShape(spec)).not.toBe(requestShape({ ...spec, cpus: 2 }))
    expect(requestShape(spec)).not.toBe(requestShape({ ...spec, memBytes: 1 }))
    expect(requestShape(spec)).not.toBe(requestShape(spec, 'ws1'))
  })
})
