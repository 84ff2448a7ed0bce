import { describe, expect, it } from 'vitest'
import { Fifo } from '../../src/common/fifo.js'

describe('Fifo', () => {
  it('gives items back in order across compactions, with put-backs and removals', () => {
    const q = new Fifo<number>()
    const out: number[] = []
    for (let i = 0; i < 5000; i++) q.push(i)
    for (let i = 0; i < 3000; i++) out.push(q.shift()!)
    // put back at the front after the queue compacted
    q.unshift(2999)
    out.pop()
    expect(q.remove(4000)).toBe(true)
    expect(q.remove(4000)).toBe(false)
    expect(q.remove(5)).toBe(false)
    expect(q.length).toBe(5000 - 2999 - 1)
    for (let x = q.shift(); x !== undefined; x = q.shift()) out.push(x)
    expect(out).toEqual(Array.from({ length: 5000 }, (_, i) => i).filter((i) => i !== 4000))
    expect(q.length).toBe(0)
    q.unshift(7)
    expect(q.shift()).toBe(7)
    q.push(1)
    q.clear()
    expect(q.shift()).toBeUndefined()
  })
})
