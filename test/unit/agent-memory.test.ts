import { describe, it, expect } from 'vitest'
import { memoryFigures, DEBUG_GC_ENV } from '../../src/agent/memory.js'
import { parseControlRequest } from '../../src/protocol/control.js'

describe('the agent memory figures', () => {
  it('forces no collection unless the agent was started to allow it', () => {
    const m = memoryFigures(true, {})
    expect(m.settled).toBe(false)
    expect(m.rssBytes).toBeGreaterThan(m.heapUsedBytes)
  })

  it('measures after a full collection when asked and allowed', () => {
    const m = memoryFigures(true, { [DEBUG_GC_ENV]: '1' })
    expect(m.settled).toBe(true)
    expect(m.heapUsedBytes).toBeGreaterThan(0)
    expect(memoryFigures(false, { [DEBUG_GC_ENV]: '1' }).settled).toBe(false)
  })

  it('counts the tables of work in progress only when asked to settle', () => {
    expect(memoryFigures(true, {}, () => ({ pending: 0 })).inFlight).toEqual({ pending: 0 })
    expect(memoryFigures(false, {}, () => ({ pending: 0 })).inFlight).toBeUndefined()
  })

  it('a status request carries settle only when it is true', () => {
    expect(parseControlRequest({ t: 'status', settle: true })).toEqual({ t: 'status', settle: true })
    expect(parseControlRequest({ t: 'status', settle: 'yes' })).toEqual({ t: 'status' })
  })
})
