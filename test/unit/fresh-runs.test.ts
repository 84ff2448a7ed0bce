/** Shared runs that are never stale: each caller gets a run that started after it called. */
import { describe, expect, it } from 'vitest'
import { FreshRuns } from '../../src/common/fresh-runs.js'

/** A job the test finishes by hand; `started` counts how many runs began. */
function jobs (): { job: () => Promise<number>, started: () => number, finish: (i: number) => void } {
  const ends: Array<(v: number) => void> = []
  return {
    job: async () => await new Promise<number>((resolve) => { ends.push(resolve) }),
    started: () => ends.length,
    finish: (i) => { ends[i]!(i) }
  }
}

const turn = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve)) }

describe('FreshRuns', () => {
  it('gives callers that come during a run the next run, shared, never the one under way', async () => {
    const runs = new FreshRuns<number>()
    const j = jobs()
    const a = runs.run('ws', j.job)
    await turn()
    expect(j.started()).toBe(1)
    const later = [runs.run('ws', j.job), runs.run('ws', j.job), runs.run('ws', j.job)]
    await turn()
    // the next run waits for the one under way
    expect(j.started()).toBe(1)
    j.finish(0)
    expect(await a).toBe(0)
    await turn()
    expect(j.started()).toBe(2)
    j.finish(1)
    expect(await Promise.all(later)).toEqual([1, 1, 1])
    // idle again: a new caller starts a run of its own at once
    const c = runs.run('ws', j.job)
    await turn()
    expect(j.started()).toBe(3)
    j.finish(2)
    expect(await c).toBe(2)
  })

  it('keeps keys apart, and a failed run fails only its own callers', async () => {
    const runs = new FreshRuns<string>()
    let n = 0
    const failing = runs.run('a', async () => { n++; throw new Error('scan failed') })
    const other = runs.run('b', async () => { n++; return 'b' })
    await expect(failing).rejects.toThrow('scan failed')
    expect(await other).toBe('b')
    expect(await runs.run('a', async () => { n++; return 'a again' })).toBe('a again')
    expect(n).toBe(3)
  })
})
