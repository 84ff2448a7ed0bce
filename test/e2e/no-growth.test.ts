/**
 * Issue 16, "no growth": after a fan-out of real tasks through the real `vbatch` on a
 * two-agent grid, with different request shapes, every table the agents keep for work in
 * progress is empty again (what `vgrid status` reports after a settle; agent/memory.ts).
 * The soak benchmark (bench/soak.ts) measures the memory itself over 20,000 tasks.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startGrid, stopAll, runCli, tempDir, waitFor, type AgentProc } from '../helpers/procs.js'
import { call } from '../../src/agent/control/client.js'
import { DEBUG_GC_ENV } from '../../src/agent/memory.js'

let a: AgentProc
let b: AgentProc
beforeAll(async () => {
  ;[a, b] = await startGrid(2, { env: { [DEBUG_GC_ENV]: '1' } })
}, 60_000)
afterAll(async () => { await stopAll() })

async function inFlight (agent: AgentProc): Promise<Record<string, number>> {
  const { status } = await call(agent.home, { t: 'status', settle: true }, { client: 'test' })
  expect(status.usage?.settled).toBe(true)
  return status.usage?.inFlight ?? { missing: 1 }
}

describe('an idle agent', () => {
  it('holds nothing for the tasks it ran, however many and of whatever shapes', async () => {
    const ws = tempDir('vgrid-nogrowth-ws-')
    const runs = [['-N', '40', 'true'], ['-N', '10', '--cpus', '0', 'true'], ['-N', '10', '--mem', '1M', 'true']]
    for (const args of runs) {
      const sub = await runCli('vbatch', ['--name', `nogrowth-${args.join('')}`, ...args], { home: a.home, cwd: ws, timeoutMs: 30_000 })
      expect(sub.code, sub.stderr).toBe(0)
      const wait = await a.vgrid(['task', 'wait', `nogrowth-${args.join('')}`], { cwd: ws, timeoutMs: 120_000 })
      expect(wait.code, wait.stderr).toBe(0)
    }
    for (const agent of [a, b]) {
      // a finished run's last messages (its load advert, its stream's close) may still be under way
      const held = await waitFor(async () => {
        const f = await inFlight(agent)
        return Object.values(f).every((n) => n === 0) ? f : undefined
      }, 'every table of work in progress to empty', 10_000, 200).catch(async () => await inFlight(agent))
      expect(held).toEqual({ pending: 0, waiting: 0, gangsWaiting: 0, placingByShape: 0, runningHere: 0, syncSessions: 0, attemptsHere: 0 })
    }
  }, 240_000)
})
