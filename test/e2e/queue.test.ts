/**
 * A run that fits nowhere now waits for a member with room instead of failing, and starts as
 * soon as one frees up.
 */
import { describe, it, expect, afterAll } from 'vitest'
import { startAgent, stopAll, startCli, waitFor, type AgentProc, type LiveCli } from '../helpers/procs.js'
import { QUIET_WAIT_ENV } from '../../src/cli/vrun-session.js'

afterAll(async () => { await stopAll() })

/** One agent lending one core, held by a run that waits on its stdin, and a second run queued behind it. */
async function busyAgent (second: string[]): Promise<{ a: AgentProc, holder: LiveCli, waiter: LiveCli }> {
  const a = await startAgent({ args: ['--cpus', '1'] })
  const holder = startCli('vrun', ['sh', '-c', 'echo holding; read x; echo released'], { home: a.home })
  await waitFor(() => holder.stdout().includes('holding'), 'the first run to hold the only core')
  const waiter = startCli('vrun', second, { home: a.home, env: { VGRID_VERBOSE: '1' } })
  await waitFor(() => waiter.stderr().includes('waiting'), 'the second run to be queued')
  expect(waiter.stderr()).toMatch(/busy/)
  return { a, holder, waiter }
}

describe('a busy grid', () => {
  it('tells a script why it waits once the wait is long, not at once', async () => {
    const a = await startAgent({ args: ['--cpus', '1'] })
    // 3 s instead of 30 (the CLI's test hook): long enough to tell "at once" from "later"
    const QUIET_WAIT_MS = 3_000
    const long = QUIET_WAIT_MS + 40_000
    const holder = startCli('vrun', ['sh', '-c', 'echo holding; read x; echo released'], { home: a.home, timeoutMs: long })
    await waitFor(() => holder.stdout().includes('holding'), 'the first run to hold the only core')
    // no terminal, not verbose: a script
    const t0 = Date.now()
    const waiter = startCli('vrun', ['echo', 'second'], { home: a.home, timeoutMs: long, env: { [QUIET_WAIT_ENV]: String(QUIET_WAIT_MS) } })
    await waitFor(() => waiter.stderr().includes('waiting:'), 'the script to be told why it waits', QUIET_WAIT_MS + 20_000, 200)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(QUIET_WAIT_MS)
    expect(waiter.stderr()).toMatch(/busy/)
    holder.child.stdin?.end('go\n')
    expect((await waiter.done).stdout).toBe('second\n')
  }, 90_000)


  it('queues a run and starts it when the core frees up', async () => {
    const { holder, waiter } = await busyAgent(['echo', 'second'])
    holder.child.stdin?.end('go\n')
    expect((await holder.done).code).toBe(0)
    const r = await waiter.done
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('second\n')
  })

  it('gives up waiting when the user presses Ctrl-C', async () => {
    const { a, holder, waiter } = await busyAgent(['echo', 'never'])
    waiter.child.kill('SIGINT')
    const r = await waiter.done
    expect(r.code).toBe(130)
    expect(r.stdout).toBe('')
    holder.child.stdin?.end('go\n')
    await holder.done
    // The abandoned run never took the core: a new one gets it at once.
    expect((await a.vrun(['echo', 'third'])).stdout).toBe('third\n')
  })
})
