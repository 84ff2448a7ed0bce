/**
 * Who may do what (DESIGN §5), through the real binaries on a three-agent loopback grid: a
 * task is cancelled only through the member that submitted it or by the one running it, a
 * record names the member it was submitted from as the connection authenticated it, and
 * `--accept-from` limits which members may run guests on a machine.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { startAgent, startGrid, stopAll, runCli, peersOf, waitFor, type AgentProc } from '../helpers/procs.js'
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

describe('--accept-from', () => {
  let d: AgentProc

  beforeAll(async () => {
    d = await startAgent({ join: a.token, args: ['--accept-from', a.peer] })
    // Every member sees d, and what d accepts.
    await Promise.all([a, b, c].map(async (x) => await waitFor(async () => (await peersOf(x)).find((p) => p.peer === d.peer)?.offer.acceptFrom?.[0] === a.peer,
      `${x.host} to see d's accept list`, 20_000, 100)))
  }, 60_000)

  const runOn = async (from: AgentProc, on: AgentProc): Promise<{ code: number | null, stdout: string, stderr: string }> =>
    await from.vrun(['--no-sync', '--on', on.peer, 'sh', '-c', 'echo "$VGRID_PEER"'])

  const accepts = async (x: AgentProc, ids: string[] | undefined): Promise<void> => {
    await waitFor(async () => JSON.stringify((await peersOf(x)).find((p) => p.peer === d.peer)?.offer.acceptFrom) === JSON.stringify(ids),
      `${x.host} to see d accept ${JSON.stringify(ids)}`, 20_000, 100)
  }

  it('refuses a command from a member it does not accept, and says why', async () => {
    const r = await runOn(c, d)
    expect(r.code).toBe(255)
    expect(r.stderr).toContain('runs commands only from the members its owner accepts (--accept-from)')
    expect(r.stderr).toContain(c.peer)
    const ok = await runOn(a, d)
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toBe(`${d.peer}\n`)
    // Its own CLI's runs are not guests.
    expect((await runOn(d, d)).code).toBe(0)
    // Every member can see who it takes commands from.
    const peers = await c.vgrid(['peers'])
    expect(peers.stdout).toMatch(/ runs commands only from \S+/)
  }, 60_000)

  it('is passed by when placing a run from a member it does not accept', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await c.vrun(['--no-sync', 'sh', '-c', 'echo "$VGRID_PEER"'])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).not.toBe(`${d.peer}\n`)
    }
  }, 60_000)

  it('changes live with agent set (a prefix of a peer id saved as the id), and is saved', async () => {
    // (Every agent here has the same host name: a prefix is what names one member.)
    const r = await d.vgrid(['agent', 'set', '--accept-from', c.peer.slice(0, 16)])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain(c.peer)
    const saved = JSON.parse(fs.readFileSync(path.join(d.home, 'config'), 'utf8'))
    expect(saved.acceptFrom).toEqual([c.peer])
    await Promise.all([a, c].map(async (x) => { await accepts(x, [c.peer]) }))
    expect((await runOn(c, d)).code).toBe(0)
    const refused = await runOn(a, d)
    expect(refused.code).toBe(255)
    expect(refused.stderr).toContain(a.peer)

    const all = await d.vgrid(['agent', 'set', '--accept-from', 'all'])
    expect(all.code, all.stderr).toBe(0)
    expect(all.stdout).toMatch(/from\s+every member/)
    expect(JSON.parse(fs.readFileSync(path.join(d.home, 'config'), 'utf8')).acceptFrom).toBe('all')
    await accepts(a, undefined)
    expect((await runOn(a, d)).code).toBe(0)
  }, 60_000)
})
