/**
 * Who may do what (DESIGN §5), through the real binaries on a three-agent loopback grid: a
 * task is cancelled only through the member that submitted it or by the one running it, a
 * record names the member it was submitted from as the connection authenticated it, and
 * `--accept-from` limits which members may run guests on a machine.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startGrid, stopAll, runCli, waitFor, type AgentProc } from '../helpers/procs.js'
import type { TaskRecord } from '../../src/agent/tasks/types.js'

const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'upstream-failed', 'lost'])

let a: AgentProc
let b: AgentProc
let c: AgentProc

beforeAll(async () => { [a, b, c] = await startGrid(3) }, 60_000)
afterAll(async () => { await stopAll() })

async function submit (agent: AgentProc, args: string[]): Promise<string> {
  const r = await runCli('vbatch', ['--no-sync', ...args], { home: agent.home, cwd: agent.workspace, timeoutMs: 30_000 })
  expect(r.code, r.stderr).toBe(0)
  return r.stdout.trim()
}

async function show (agent: AgentProc, id: string): Promise<TaskRecord> {
  const r = await agent.vgrid(['task', 'show', id, '--json'])
  if (r.code !== 0) throw new Error(`vgrid task show ${id} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as TaskRecord
}

async function running (id: string): Promise<TaskRecord> {
  return await waitFor(async () => { const t = await show(a, id); return t.state === 'running' ? t : undefined }, `task ${id} to run`, 20_000, 100)
}

async function ended (id: string): Promise<TaskRecord> {
  return await waitFor(async () => { const t = await show(a, id); return FINAL.has(t.state) ? t : undefined }, `task ${id} to end`, 20_000, 100)
}

describe('cancelling a task', () => {
  it('is refused to a third member, and says who may', async () => {
    const id = await submit(a, ['--on', b.peer, 'sleep', '60'])
    expect((await running(id)).peer).toBe(b.peer)
    const r = await c.vgrid(['task', 'cancel', id])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('only the member that submitted it')
    expect(r.stderr).toContain(a.host)
    expect((await show(a, id)).state).toBe('running')
    // The owner of the machine it runs on may stop it.
    const byB = await b.vgrid(['task', 'cancel', id])
    expect(byB.code, byB.stderr).toBe(0)
    expect((await ended(id)).state).toBe('cancelled')
  }, 60_000)

  it('works from the member that submitted it', async () => {
    const id = await submit(a, ['--on', b.peer, 'sleep', '60'])
    await running(id)
    const r = await a.vgrid(['task', 'cancel', id])
    expect(r.code, r.stderr).toBe(0)
    expect((await ended(id)).state).toBe('cancelled')
  }, 60_000)

  it('works from the member that submitted the task a sub-task came from', async () => {
    // The parent runs on b; its sub-task is owned by b, runs on c, and was submitted for a.
    const parent = await submit(a, ['--on', b.peer, 'vbatch', '--no-sync', '--on', c.peer, 'sleep', '60'])
    // Its command has ended: the parent now waits for its child, and names it.
    const kid = await waitFor(async () => (await show(a, parent)).children[0], 'the sub-task to be submitted', 20_000, 100)
    await waitFor(async () => (await show(b, kid)).state === 'running', 'the sub-task to run', 20_000, 100)
    const k = await show(b, kid)
    expect(k.owner).toBe(b.peer)
    expect(k.submitter).toBe(a.peer)
    const r = await a.vgrid(['task', 'cancel', kid])
    expect(r.code, r.stderr).toBe(0)
    await waitFor(async () => (await show(b, kid)).state === 'cancelled', 'the sub-task to be cancelled', 20_000, 100)
    await ended(parent)
  }, 60_000)
})

describe('task records', () => {
  it('show the member a task was submitted from, by its peer id, beside its user@host', async () => {
    const id = await submit(a, ['--on', b.peer, 'true'])
    await ended(id)
    const t = await show(c, id)
    expect(t.submitter).toBe(a.peer)
    expect(t.user).toMatch(new RegExp(`@${a.host}$`))
    const r = await c.vgrid(['task', 'show', id])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^submitter\\s+\\S+@${a.host} \\(peer ${a.peer}\\)$`, 'm'))
  }, 60_000)
})
