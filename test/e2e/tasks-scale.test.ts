/**
 * Sub-tasks at lab scale, through the real binaries on a three-agent loopback grid: a task
 * whose script submits 200 sub-tasks, eight at a time. A heavy suite (`npm run test:heavy`):
 * 200 `vbatch` processes on a 2-core machine take most of a minute.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startGrid, stopAll, type AgentProc } from '../helpers/procs.js'
import { workspace, submitOne, show, wait, childrenOf } from '../helpers/tasks.js'

let a: AgentProc
beforeAll(async () => { [a] = await startGrid(3) }, 60_000)
afterAll(async () => { await stopAll() })

describe('sub-tasks at lab scale', () => {
  it('runs 200 sub-tasks fanned out with xargs -P 8', async () => {
    const ws = workspace()
    const parent = await submitOne(a, ['bash', '-c', 'seq 200 | xargs -P 8 -I {} vbatch --no-sync true'], ws)
    const w = await wait(a, parent, 150_000)
    expect(w.stderr).toBe('')
    expect(w.code).toBe(0)
    const p = await show(a, parent)
    expect(p.state).toBe('succeeded')
    expect(p.children).toHaveLength(200)
    const kids = await childrenOf(a, parent)
    expect(kids).toHaveLength(200)
    expect(kids.filter((k) => k.state !== 'succeeded')).toEqual([])
  }, 170_000)
})
