/**
 * The owner's controls, end to end on a two-agent loopback grid: `vgrid agent set --pause`
 * and `--resume`, `vgrid agent stop` and `vgrid agent stop --drain`, and what `vgrid peers`
 * and `vgrid status` show of them. Guests wait on files in a directory the test shares with
 * them, so each ends exactly when the test says.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { guestShare, peersOf, runCli, sharedDir, startAgent, startCli, stopAll, waitFor, type AgentProc, type LiveCli } from '../helpers/procs.js'
import type { TaskRecord } from '../../src/agent/tasks/types.js'

let a: AgentProc
let b: AgentProc
const share = sharedDir()
const startB = async (home?: string): Promise<AgentProc> => await startAgent({ join: a.token, args: guestShare(share), ...(home !== undefined ? { home } : {}) })

beforeAll(async () => {
  a = await startAgent({ args: guestShare(share) })
  b = await startB()
  await waitFor(async () => (await peersOf(a)).length === 2 && (await peersOf(b)).length === 2, 'both agents to see each other', 20_000, 100)
})
afterAll(async () => {
  await stopAll()
})

/** A command that says it started, then waits for the test to create `name` in the shared directory. */
function held (name: string): string[] {
  const go = path.join(share, name)
  return ['sh', '-c', `echo started; while [ ! -e ${go} ]; do sleep 0.05; done; echo finished`]
}
const release = (name: string): void => { fs.writeFileSync(path.join(share, name), '') }

/** A vrun from A held on B, started and running. */
async function guestOnB (name: string): Promise<LiveCli> {
  const run = startCli('vrun', ['--on', b.peer, ...held(name)], { home: a.home, cwd: a.workspace, timeoutMs: 60_000 })
  await waitFor(() => run.stdout().includes('started'), 'the guest on B to start', 20_000)
  return run
}

async function lendingSeenBy (from: AgentProc, of: AgentProc): Promise<'paused' | 'draining' | 'yes' | undefined> {
  const p = (await peersOf(from)).find((x) => x.peer === of.peer)
  if (p === undefined) return undefined
  return p.load.draining === true ? 'draining' : p.load.paused === true ? 'paused' : 'yes'
}

/** Which member ran a command: the member sets VGRID_PEER for it. */
async function ranOn (from: AgentProc, bin: 'vrun' | 'vbatch'): Promise<string> {
  const cmd = ['sh', '-c', 'echo $VGRID_PEER']
  if (bin === 'vrun') {
    const r = await from.vrun(cmd)
    expect(r.code, r.stderr).toBe(0)
    return r.stdout.trim()
  }
  const sub = await runCli('vbatch', cmd, { home: from.home, cwd: from.workspace })
  expect(sub.code, sub.stderr).toBe(0)
  const id = sub.stdout.trim()
  const w = await from.vgrid(['task', 'wait', id])
  expect(w.code, w.stderr).toBe(0)
  return (await from.vgrid(['task', 'log', id])).stdout.trim()
}

async function show (x: AgentProc, id: string): Promise<TaskRecord> {
  const r = await x.vgrid(['task', 'show', id, '--json'])
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as TaskRecord
}

describe('vgrid agent set --pause / --resume', () => {
  it('a paused member takes nothing new, its running guest goes on and succeeds; --resume lends again', async () => {
    const guest = await guestOnB('pause-go')
    const out = await b.vgrid(['agent', 'set', '--pause'])
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toMatch(/\n {2}paused {6}it takes no new command; the running ones go on/)
    expect(JSON.parse(fs.readFileSync(path.join(b.home, 'config'), 'utf8'))).toMatchObject({ paused: true })
    await waitFor(async () => await lendingSeenBy(a, b) === 'paused', 'A to see B paused', 10_000, 100)

    // Shown to every member and on the machine itself.
    // both members are called the same here: B is named with the end of its peer id
    expect((await a.vgrid(['peers'])).stdout).toContain(`${b.host} (…${b.peer.slice(-6)}) is paused by its owner: it takes no new command (1 running go on)`)
    expect((await b.vgrid(['status'])).stdout).toMatch(/lending +paused: no new command/)

    // New work, submitted on B itself too, goes to A.
    expect(await ranOn(b, 'vrun')).toBe(a.peer)
    expect(await ranOn(b, 'vbatch')).toBe(a.peer)
    expect(await ranOn(a, 'vbatch')).toBe(a.peer)
    // Asked for by name, it waits, saying why.
    const pinned = startCli('vrun', ['--on', b.peer, 'sh', '-c', 'echo $VGRID_PEER'], { home: a.home, cwd: a.workspace, env: { VGRID_VERBOSE: '1' }, timeoutMs: 60_000 })
    await waitFor(() => /paused/.test(pinned.stderr()), 'the run for B to wait, saying B is paused', 20_000)

    // The guest that ran before the pause goes on, and succeeds.
    release('pause-go')
    const r = await guest.done
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('started\nfinished\n')

    const resumed = await b.vgrid(['agent', 'set', '--resume'])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stdout).not.toMatch(/paused/)
    expect(JSON.parse(fs.readFileSync(path.join(b.home, 'config'), 'utf8')).paused).toBeUndefined()
    const p = await pinned.done
    expect(p.code, p.stderr).toBe(0)
    expect(p.stdout.trim()).toBe(b.peer)
    await waitFor(async () => await lendingSeenBy(a, b) === 'yes', 'A to see B lend again', 10_000, 100)
  })

  it('--cpus 0 and --max-tasks 0 are accepted: nothing new runs there', async () => {
    const out = await b.vgrid(['agent', 'set', '--max-tasks', '0'])
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toMatch(/at once +at most 0 commands/)
    expect(await ranOn(b, 'vrun')).toBe(a.peer)
    const cpus = await b.vgrid(['agent', 'set', '--max-tasks', 'unlimited', '--cpus', '0'])
    expect(cpus.code, cpus.stderr).toBe(0)
    expect(cpus.stdout).toMatch(/lends 0 of \d+ cores/)
    expect(await ranOn(b, 'vrun')).toBe(a.peer)
    expect((await b.vgrid(['agent', 'set', '--cpus', 'all'])).code).toBe(0)
  })

  it('a pause outlives a restart of the agent; plain `vgrid agent stop` stops it at once', async () => {
    expect((await b.vgrid(['agent', 'set', '--pause'])).code).toBe(0)
    const stop = await b.vgrid(['agent', 'stop'])
    expect(stop.code, stop.stderr).toBe(0)
    expect(stop.stdout).toBe(`${b.host}: the agent stops\nthe agent on ${b.host} has stopped\n`)
    expect(b.proc.exitCode).toBe(0)
    expect(b.output()).toContain('vgrid agent stop, stopping the agent')

    b = await startB(b.home)
    expect((await b.vgrid(['agent', 'set'])).stdout).toMatch(/\n {2}paused /)
    await waitFor(async () => await lendingSeenBy(a, b) === 'paused', 'A to see the restarted B paused', 20_000, 100)
    expect((await b.vgrid(['agent', 'set', '--resume'])).code).toBe(0)
    await waitFor(async () => await lendingSeenBy(a, b) === 'yes', 'A to see B lend again', 10_000, 100)
  })
})

describe('vgrid agent stop --drain', () => {
  it('Ctrl-C of the waiting command leaves the agent draining; --resume calls the drain off', async () => {
    const guest = await guestOnB('cancel-go')
    const drain = startCli('vgrid', ['agent', 'stop', '--drain'], { home: b.home, timeoutMs: 60_000 })
    await waitFor(() => drain.stdout().includes('Ctrl-C'), 'the drain to start')
    expect(drain.stdout()).toBe(`${b.host} is draining: it takes no new command, and stops once the 1 guest command running there has ended\n` +
      '(Ctrl-C here stops only this wait: the agent drains on)\n')
    drain.child.kill('SIGINT')
    const left = await drain.done
    expect(left.code).toBe(130)
    expect(left.stdout).toContain(`stopped waiting: ${b.host} drains on`)
    expect((await b.vgrid(['status'])).stdout).toMatch(/lending +draining/)
    await waitFor(async () => await lendingSeenBy(a, b) === 'draining', 'A to see B draining', 10_000, 100)
    expect((await a.vgrid(['peers'])).stdout).toContain(`${b.host} (…${b.peer.slice(-6)}) is draining: it takes no new command and stops once its 1 running command has ended`)

    const resumed = await b.vgrid(['agent', 'set', '--resume'])
    expect(resumed.code, resumed.stderr).toBe(0)
    await waitFor(async () => await lendingSeenBy(a, b) === 'yes', 'A to see B lend again', 10_000, 100)
    release('cancel-go')
    expect((await guest.done).code).toBe(0)
    // The guest has ended, and the agent, no longer draining, runs on.
    expect(b.proc.exitCode).toBeNull()
    expect((await b.vgrid(['status'])).stdout).toMatch(/lending +yes/)
  })

  it('the agent stops only once its guest has ended, and the guest\'s task succeeded', async () => {
    const sub = await runCli('vbatch', ['--on', b.peer, ...held('drain-go')], { home: a.home, cwd: a.workspace })
    expect(sub.code, sub.stderr).toBe(0)
    const id = sub.stdout.trim()
    await waitFor(async () => (await show(a, id)).state === 'running', 'the task to run on B', 20_000, 100)

    const drain = startCli('vgrid', ['agent', 'stop', '--drain'], { home: b.home, timeoutMs: 60_000 })
    await waitFor(() => drain.stdout().includes('is draining'), 'the drain to start')
    expect(drain.stdout()).toContain('stops once the 1 guest command running there has ended')
    await waitFor(async () => await lendingSeenBy(a, b) === 'draining', 'A to see B draining', 10_000, 100)
    // New work goes elsewhere, also what B's own owner submits.
    expect(await ranOn(b, 'vrun')).toBe(a.peer)
    expect(b.proc.exitCode).toBeNull()

    release('drain-go')
    const done = await drain.done
    expect(done.code, done.stderr).toBe(0)
    expect(done.stdout).toMatch(new RegExp(`${b.host}: nothing runs there any more: the agent stops\nthe agent on ${b.host} has stopped\n$`))
    expect(b.proc.exitCode).toBe(0)
    // By the time the agent had gone, the task had ended on A, with the guest's output.
    const t = await show(a, id)
    expect(t.state).toBe('succeeded')
    expect((await a.vgrid(['task', 'log', id])).stdout).toBe('started\nfinished\n')
  })
})
