import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ReachWatch } from '../../src/agent/reach-watch.js'

describe('ReachWatch', () => {
  beforeEach(() => { vi.useFakeTimers() })
  afterEach(() => { vi.useRealTimers() })

  const setup = (connected: boolean): { watch: ReachWatch, said: string[], set: (c: boolean) => void, change: () => void } => {
    let up = connected
    let listener: (() => void) | undefined
    const said: string[] = []
    const watch = new ReachWatch({
      addrs: ['/ip4/10.0.0.1/tcp/7321/p2p/A', '/ip4/10.0.0.2/tcp/7321/p2p/A', '/ip4/10.0.0.3/tcp/7321/p2p/A'],
      suspect: 'wrong join token',
      connected: () => up,
      onViewChange: (cb) => { listener = cb; return () => { listener = undefined } },
      warn: (m) => { said.push(`warn ${m}`) },
      reached: (m) => { said.push(`reached ${m}`) }
    })
    return { watch, said, set: (c) => { up = c }, change: () => { listener?.() } }
  }

  it('says nothing while a member is reached in time', () => {
    const { watch, said } = setup(true)
    vi.advanceTimersByTime(10_000)
    expect(watch.warning).toBeUndefined()
    expect(said).toEqual([])
  })

  it('warns after 10 s alone, naming the addresses, and clears once a member is reached', () => {
    const { watch, said, set, change } = setup(false)
    vi.advanceTimersByTime(9_999)
    expect(watch.warning).toBeUndefined()
    vi.advanceTimersByTime(1)
    expect(watch.warning).toBe('could not reach any member of the grid at /ip4/10.0.0.1/tcp/7321/p2p/A, /ip4/10.0.0.2/tcp/7321/p2p/A and 1 more within 10 s (wrong join token, or the address is unreachable)')
    expect(said).toEqual([`warn ${watch.warning!}`])
    set(true)
    change()
    expect(watch.warning).toBeUndefined()
    expect(said[1]).toBe('reached reached a member of the grid')
    watch.stop()
  })
})
