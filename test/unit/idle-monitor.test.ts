import { describe, expect, it } from 'vitest'
import {
  DEFAULT_IDLE_RULE, idleRule, OwnerActivity, startIdleMonitor, type IdleRule, type OwnerState
} from '../../src/agent/idle-monitor.js'
import { waitFor } from '../helpers/wait.js'

/** Feeds one sample a second from t = 0 s; returns the state after each. */
function play (loads: number[], rule: IdleRule = DEFAULT_IDLE_RULE): OwnerState[] {
  const a = new OwnerActivity(rule)
  return loads.map((pct, i) => { a.feed(i * rule.sampleMs, pct); return a.state })
}

describe('the idle rule', () => {
  it('is documented as 25 % of the cores over 10 s, idle again after 60 s', () => {
    expect(DEFAULT_IDLE_RULE).toEqual({ sampleMs: 1_000, windowMs: 10_000, busyPercent: 25, idleAfterMs: 60_000 })
  })

  it('lends once the first full 10 s window is quiet', () => {
    const states = play(Array(12).fill(5))
    expect(states.slice(0, 9)).toEqual(Array(9).fill('starting'))
    expect(states[9]).toBe('idle')
  })

  it('is busy as soon as the 10 s average reaches 25 %, even at start', () => {
    expect(play([100])[0]).toBe('busy')
    // idle, then the owner works at full speed: 3 s of 100 % make the window 30 %
    const states = play([...Array(10).fill(0), 100, 100, 100])
    expect(states.slice(9)).toEqual(['idle', 'idle', 'idle', 'busy'])
    // a short burst does not count: 2 s of 100 % are 20 % of the window
    expect(play([...Array(10).fill(0), 100, 100, 0, 0]).at(-1)).toBe('idle')
  })

  it('lends again only after the average has stayed below the threshold for 60 s', () => {
    const busy = [...Array(10).fill(0), ...Array(10).fill(100)]
    const calm = play([...busy, ...Array(90).fill(0)])
    // 8 s after the owner stopped, 2 busy seconds are left in the window: 20 %, below 25 %;
    // 60 s of that, and the machine lends again
    const idleAt = calm.findIndex((s, i) => i >= busy.length && s === 'idle')
    expect(idleAt - busy.length).toBe(7 + 60)
    // any busy window on the way starts the 60 s again
    const interrupted = play([...busy, ...Array(40).fill(0), ...Array(5).fill(100), ...Array(60).fill(0)])
    expect(interrupted.at(-1)).toBe('busy')
  })

  it('takes the test hook\'s timings from VGRID_OWNER_LOAD_TIMING', () => {
    expect(idleRule({})).toBe(DEFAULT_IDLE_RULE)
    expect(idleRule({ VGRID_OWNER_LOAD_TIMING: '100,200,300' })).toEqual({ sampleMs: 100, windowMs: 200, busyPercent: 25, idleAfterMs: 300 })
    for (const bad of ['100,200', 'a,b,c', '1,200,300', '100,200,300,400']) {
      // a usage error, not an "internal error, report it"
      expect(() => idleRule({ VGRID_OWNER_LOAD_TIMING: bad })).toThrow(expect.objectContaining({ code: 'ERR_BAD_ARGUMENT', message: expect.stringMatching(/SAMPLE_MS,WINDOW_MS,IDLE_AFTER_MS/) }))
    }
  })
})

describe('startIdleMonitor', () => {
  it('samples the source and reports each change', async () => {
    let load = 0
    const seen: OwnerState[] = []
    const m = startIdleMonitor({ sample: async () => load }, { sampleMs: 10, windowMs: 10, busyPercent: 25, idleAfterMs: 50 }, (s) => { seen.push(s) })
    try {
      await waitFor(() => seen.includes('idle'), 'idle')
      load = 80
      await waitFor(() => seen.at(-1) === 'busy', 'busy')
      load = 0
      await waitFor(() => seen.at(-1) === 'idle', 'idle again')
      expect(seen).toEqual(['idle', 'busy', 'idle'])
      expect(m.activity.load).toBe(0)
    } finally {
      m.stop()
    }
  })
})
