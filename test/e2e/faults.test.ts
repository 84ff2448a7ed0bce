/**
 * Faults, through the real binaries on loopback grids: the agent that owns a task (where it
 * was submitted) stopped, killed or restarted while the task waits, syncs, runs or brings its
 * outputs back; its executor stopped or killed. Each test checks that nothing is lost (the
 * log has every line once, the outputs come back, dependents run) and that no task is marked
 * wrongly (a task that never started never ends `failed`; a retry is spent only on an attempt
 * that ran).
 */
import { describe, it, expect, afterAll } from 'vitest'
import fs from 'node:fs'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { startGrid, startAgent, stopAll, runCli, startCli, waitFor, tempDir, sharedDir, guestShare, type AgentProc, type CliResult } from '../helpers/procs.js'
import type { TaskRecord } from '../../src/agent/tasks/types.js'

afterAll(async () => { await stopAll() })

const share = sharedDir()
/** A file a command waits for, in a directory the guests see. */
function goFile (name: string): string {
  return path.join(share, `${name}-${Math.random().toString(16).slice(2)}`)
}
const hold = (go: string): string => `while [ ! -e ${go} ]; do sleep 0.05; done`

function workspace (files: Record<string, string> = {}): string {
  const dir = tempDir('vgrid-faults-ws-')
  for (const [rel, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, rel), content)
  return dir
}
const read = (dir: string, rel: string): string => fs.readFileSync(path.join(dir, rel), 'utf8')

async function submit (agent: AgentProc, args: string[], cwd: string): Promise<string[]> {
  const r = await runCli('vbatch', args, { home: agent.home, cwd, timeoutMs: 30_000 })
  expect(r.code, `vbatch ${args.join(' ')}: ${r.stderr}`).toBe(0)
  return r.stdout.trim().split('\n')
}

async function show (agent: AgentProc, id: string): Promise<TaskRecord> {
  const r = await agent.vgrid(['task', 'show', id, '--json'])
  if (r.code !== 0) throw new Error(`vgrid task show ${id} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as TaskRecord
}

async function wait (agent: AgentProc, id: string, timeoutMs = 60_000): Promise<CliResult> {
  return await runCli('vgrid', ['task', 'wait', id], { home: agent.home, timeoutMs })
}

/** Stops `x` (unless it is `stopped` already) and starts it again on its home, back in the grid of `others`. */
async function restart (x: AgentProc, how: 'SIGTERM' | 'SIGKILL' | 'stopped', others: AgentProc[]): Promise<AgentProc> {
  if (how === 'SIGKILL') {
    const died = new Promise((resolve) => x.proc.once('exit', resolve))
    x.proc.kill('SIGKILL')
    await died
  } else if (how === 'SIGTERM') {
    expect((await x.stop('SIGTERM')).code).toBe(0)
  }
  const x2 = await startAgent({ home: x.home, args: guestShare(share) })
  for (const o of others) {
    await waitFor(async () => (await x2.vgrid(['peers', '--json'])).stdout.includes(o.peer), 'the restarted owner to see the grid again', 20_000, 100)
  }
  return x2
}

describe('a task whose owner goes away', () => {
  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    it(`runs on through the owner's ${how} and restart: the log goes on, outputs come back, dependents start`, async () => {
      const [x, y] = await startGrid(2, { args: guestShare(share), env: { DEBUG: 'vgrid:tasks' } })
      let x2: AgentProc | undefined
      try {
        await waitFor(() => fs.existsSync(path.join(x.home, 'peers.json')), 'the owner to save its known peers', 15_000, 100)
        const ws = workspace({ 'in.txt': 'input\n' })
        const away = goFile('away')
        const back = goFile('back')
        const mark = goFile('ran')
        // Output before, while and after the owner is away; an output file; one attempt only.
        const script = `echo before; ${hold(away)}; echo while-away; echo "$VGRID_PEER" > ${mark}; ${hold(back)}; echo after; cat in.txt > out.txt`
        const [id] = await submit(x, ['--on', y.peer, '--name', 'long', 'sh', '-c', script], ws)
        const [dep] = await submit(x, ['--after-success', 'long', 'sh', '-c', 'cat out.txt > dep.txt'], ws)
        await waitFor(async () => (await runCli('vgrid', ['task', 'log', id], { home: x.home, timeoutMs: 10_000 })).stdout === 'before\n', 'the first line', 30_000, 100)

        // Waiting and following on the owner's own machine: both wait through its restart.
        const waiting = startCli('vgrid', ['task', 'wait', id], { home: x.home, timeoutMs: 120_000 })
        const following = startCli('vgrid', ['task', 'log', '-f', id], { home: x.home, timeoutMs: 120_000 })
        await waitFor(() => following.stdout() === 'before\n', 'the follower to print the first line', 20_000, 50)
        await waitFor(() => x.output().includes(`a command here waits for task ${id}`), 'the wait to reach the owner', 20_000, 50)
        // The owner goes; the command goes on without it.
        const stopping = restart(x, how, [y])
        await new Promise((resolve) => setTimeout(resolve, 0))
        fs.writeFileSync(away, '')
        x2 = await stopping
        await waitFor(() => fs.existsSync(mark), 'the command to go on while its owner was away', 30_000, 100)
        fs.writeFileSync(back, '')

        const w = await wait(x2, id)
        const rec = await show(x2, id)
        expect(w.code, `${w.stderr}\n${JSON.stringify(rec, null, 1)}\n${x2.output()}`).toBe(0)
        expect(rec.state).toBe('succeeded')
        expect(rec.attempts).toHaveLength(1)
        expect(rec.attempts[0]).toMatchObject({ peer: y.peer, state: 'succeeded' })
        const log = await runCli('vgrid', ['task', 'log', id], { home: x2.home, timeoutMs: 10_000 })
        expect(log.stdout).toBe('before\nwhile-away\nafter\n')
        expect(read(ws, 'out.txt')).toBe('input\n')
        expect((await wait(x2, dep)).code).toBe(0)
        expect(read(ws, 'dep.txt')).toBe('input\n')
        expect(rec.history?.map((h) => h.why).join('\n')).toMatch(/owning agent restarted; finding the attempt/)
        const [waited, followed] = await Promise.all([waiting.done, following.done])
        expect(waited.code, waited.stderr).toBe(0)
        expect(waited.stderr).toMatch(/the agent stopped; waiting for it to come back/)
        expect(followed.code, followed.stderr).toBe(0)
        expect(followed.stdout).toBe('before\nwhile-away\nafter\n')
      } finally {
        await Promise.all([y.stop(), x2?.stop(), x.stop()])
      }
    }, 150_000)
  }

  it('that ended while its owner was away: its exit and outputs wait on the executor', async () => {
    const [x, y] = await startGrid(2, { args: guestShare(share) })
    let x2: AgentProc | undefined
    try {
      await waitFor(() => fs.existsSync(path.join(x.home, 'peers.json')), 'the owner to save its known peers', 15_000, 100)
      const ws = workspace()
      const away = goFile('away')
      const ended = goFile('ended')
      const [id] = await submit(x, ['--on', y.peer, 'sh', '-c', `echo one; ${hold(away)}; echo two; echo made > made.txt; touch ${ended}; exit 3`], ws)
      await waitFor(async () => (await show(x, id)).state === 'running', 'the task to run', 30_000, 100)
      expect((await x.stop('SIGTERM')).code).toBe(0)
      fs.writeFileSync(away, '')
      await waitFor(() => fs.existsSync(ended), 'the command to end while its owner is away', 30_000, 100)
      x2 = await restart(x, 'stopped', [y])
      const w = await wait(x2, id)
      expect(w.code).toBe(3)
      const rec = await show(x2, id)
      expect(rec).toMatchObject({ state: 'failed', exitCode: 3 })
      expect(rec.attempts).toHaveLength(1)
      expect((await runCli('vgrid', ['task', 'log', id], { home: x2.home, timeoutMs: 10_000 })).stdout).toBe('one\ntwo\n')
      expect(read(ws, 'made.txt')).toBe('made\n')
    } finally {
      await Promise.all([y.stop(), x2?.stop(), x.stop()])
    }
  }, 150_000)
})

describe('a --timeout that runs out while the owner is away', () => {
  it('still counts: the command is stopped on its executor once the owner is back, and the task ends failed', async () => {
    const [x, y] = await startGrid(2, { args: guestShare(share) })
    let x2: AgentProc | undefined
    try {
      await waitFor(() => fs.existsSync(path.join(x.home, 'peers.json')), 'the owner to save its known peers', 15_000, 100)
      // a command line no other process has, to find it on the executor's machine
      const marker = `${600 + Math.floor(Math.random() * 1000)}.${Math.floor(Math.random() * 1e6)}`
      const running = (): boolean => spawnSync('pgrep', ['-f', `sleep ${marker}`]).status === 0
      const [id] = await submit(x, ['--on', y.peer, '--timeout', '6s', 'sh', '-c', `echo started; sleep ${marker}`], workspace())
      await waitFor(async () => (await show(x, id)).state === 'running' && running(), 'the task to run', 30_000, 100)
      const placed = (await show(x, id)).attempts[0]!.started
      const died = new Promise((resolve) => x.proc.once('exit', resolve))
      x.proc.kill('SIGKILL')
      await died
      // its six seconds run out while no owner counts them
      await waitFor(() => Date.now() > placed + 8_000, 'the timeout to pass', 20_000, 100)
      expect(running()).toBe(true)
      x2 = await restart(x, 'stopped', [y])
      const w = await wait(x2, id)
      expect(w.code).not.toBe(0)
      const rec = await show(x2, id)
      expect(rec).toMatchObject({ state: 'failed', error: 'timed out after 6 s' })
      expect(rec.attempts).toHaveLength(1)
      await waitFor(() => !running(), 'the command to be stopped on the executor', 20_000, 100)
    } finally {
      await Promise.all([y.stop(), x2?.stop(), x.stop()])
    }
  }, 150_000)
})

describe('tasks that had not started when their owner stopped', () => {
  it('are placed when it is back: none ends failed, none spends a retry', async () => {
    const [x, y] = await startGrid(2, { args: guestShare(share) })
    let x2: AgentProc | undefined
    try {
      await waitFor(() => fs.existsSync(path.join(x.home, 'peers.json')), 'the owner to save its known peers', 15_000, 100)
      const ws = workspace()
      const go = goFile('go')
      // Each takes every core of its member: one runs on each, the others wait in line.
      const here = await submit(x, ['-N', '8', '--retries', '1', '--on', x.peer, '--cpus', '2', 'sh', '-c', `${hold(go)}; echo "here $VGRID_SHARD_INDEX"`], ws)
      const there = await submit(x, ['-N', '8', '--on', y.peer, '--cpus', '2', 'sh', '-c', `${hold(go)}; echo "there $VGRID_SHARD_INDEX"`], ws)
      await waitFor(async () => (await show(x, here[0]!)).state === 'running' && (await show(x, there[0]!)).state === 'running', 'one of each to run', 30_000, 100)
      expect((await x.stop('SIGTERM')).code).toBe(0)
      x2 = await restart(x, 'stopped', [y])
      const r2 = x2
      // Nothing ended because its owner stopped (the one running here had a retry).
      const states = await Promise.all([...here, ...there].map(async (id) => (await show(r2, id)).state))
      expect(states.filter((s) => s !== 'queued' && s !== 'running' && s !== 'pending')).toEqual([])
      fs.writeFileSync(go, '')
      for (const id of [...here, ...there]) {
        const w = await wait(r2, id, 120_000)
        const rec = await show(r2, id)
        expect(w.code, `${id}: ${JSON.stringify(rec, null, 1)}`).toBe(0)
        // The one running here was stopped with its owner (lost, placed again); the others ran once.
        expect(rec.attempts.filter((a) => a.state === 'succeeded')).toHaveLength(1)
      }
      // Of those that ran here, one was stopped with its owner; those that waited ran once.
      const hereRecs = await Promise.all(here.map(async (id) => await show(r2, id)))
      expect(hereRecs.flatMap((t) => t.attempts.map((a) => a.state)).sort()).toEqual(['lost', ...Array(8).fill('succeeded')])
      expect(hereRecs.find((t) => t.attempts.length === 2)!.attempts[0]!.error).toMatch(/owning agent stopped/)
      // Those on the other member: each ran once, the one running through the restart too.
      const thereRecs = await Promise.all(there.map(async (id) => await show(r2, id)))
      expect(thereRecs.flatMap((t) => t.attempts.map((a) => a.state))).toEqual(Array(8).fill('succeeded'))
    } finally {
      await Promise.all([y.stop(), x2?.stop(), x.stop()])
    }
  }, 240_000)
})

describe('a task whose executor goes away', () => {
  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    it(`after ${how} of its executor while it runs: lost there, placed again elsewhere, never failed`, async () => {
      const [x, y, z] = await startGrid(3, { args: guestShare(share) })
      try {
        const ws = workspace()
        const go = goFile('go')
        const busy = goFile('busy')
        // x and z busy: the unpinned task, which takes a whole member, can only go to y.
        const blockers = [...await submit(x, ['--on', x.peer, '--cpus', '2', 'sh', '-c', hold(busy)], ws), ...await submit(x, ['--on', z.peer, '--cpus', '2', 'sh', '-c', hold(busy)], ws)]
        for (const b of blockers) await waitFor(async () => (await show(x, b)).state === 'running', 'the blockers to run', 30_000, 100)
        const [once] = await submit(x, ['--on', y.peer, '--cpus', '0', 'sh', '-c', `${hold(go)}; echo done`], ws)
        const [retried] = await submit(x, ['--retries', '1', '--cpus', '2', 'sh', '-c', `echo "on $VGRID_PEER"; ${hold(go)}; echo done`], ws)
        await waitFor(async () => (await show(x, retried)).state === 'running' && (await show(x, once)).state === 'running', 'both to run on y', 30_000, 100)
        expect((await show(x, retried)).peer).toBe(y.peer)
        if (how === 'SIGKILL') y.proc.kill('SIGKILL')
        else expect((await y.stop('SIGTERM')).code).toBe(0)
        // The pinned one cannot go elsewhere: it is lost (not failed); the other had a retry.
        const lost = await waitFor(async () => { const t = await show(x, once); return t.state === 'lost' ? t : undefined }, 'the pinned task to be lost', 60_000, 200)
        expect(lost.attempts).toHaveLength(1)
        fs.writeFileSync(busy, '')
        fs.writeFileSync(go, '')
        const w = await wait(x, retried)
        const rec = await show(x, retried)
        expect(w.code, JSON.stringify(rec, null, 1)).toBe(0)
        expect(rec.attempts.map((a) => a.state)).toEqual(['lost', 'succeeded'])
        expect(rec.attempts[0]!.peer).toBe(y.peer)
        expect(rec.attempts[1]!.peer).not.toBe(y.peer)
        // Stopped, it says so when that word gets out before its connections close: lost either way.
        expect(rec.attempts[0]!.error, rec.attempts[0]!.error).toMatch(/while the command ran/)
        const log = await runCli('vgrid', ['task', 'log', retried], { home: x.home, timeoutMs: 10_000 })
        expect(log.stdout).toBe(`on ${y.peer}\non ${rec.attempts[1]!.peer}\ndone\n`)
        expect(log.stderr).toMatch(/^--- attempt 2 on \S+ \(…\w+\), after: .+ ---$/m)
      } finally {
        await Promise.all([x.stop(), y.stop(), z.stop()])
      }
    }, 150_000)
  }
})

describe('a task whose owner is killed while its member syncs the workspace', () => {
  it('is placed again once the owner is back, without spending a retry, and runs on the whole workspace', async () => {
    const [x, y] = await startGrid(2, { args: guestShare(share) })
    let x2: AgentProc | undefined
    try {
      await waitFor(() => fs.existsSync(path.join(x.home, 'peers.json')), 'the owner to save its known peers', 15_000, 100)
      const ws = workspace()
      // Enough files that the sync takes a while on this machine.
      for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(ws, `f${i}.txt`), `file ${i} `.repeat(200))
      const [id] = await submit(x, ['--on', y.peer, 'sh', '-c', 'ls | wc -l'], ws)
      await waitFor(async () => (await show(x, id)).attempts.length === 1, 'the task to be placed', 30_000, 20)
      x.proc.kill('SIGKILL')
      await new Promise((resolve) => x.proc.once('exit', resolve))
      x2 = await restart(x, 'stopped', [y])
      const w = await wait(x2, id, 120_000)
      const rec = await show(x2, id)
      expect(w.code, JSON.stringify(rec, null, 1)).toBe(0)
      expect(rec.state).toBe('succeeded')
      expect((await runCli('vgrid', ['task', 'log', id], { home: x2.home, timeoutMs: 10_000 })).stdout).toMatch(/^3000\n$/m)
    } finally {
      await Promise.all([y.stop(), x2?.stop(), x.stop()])
    }
  }, 180_000)
})

describe('a task whose owner is frozen (SIGSTOP) past the time members are forgotten', () => {
  it('runs on, and the owner finds it again when it wakes: one attempt, its whole log', async () => {
    const [x, y, z] = await startGrid(3, { args: guestShare(share) })
    try {
      const ws = workspace()
      const go = goFile('go')
      const mark = goFile('mark')
      const [id] = await submit(x, ['--on', y.peer, 'sh', '-c', `echo one; ${hold(go)}; echo two; touch ${mark}`], ws)
      await waitFor(async () => (await show(x, id)).state === 'running', 'the task to run', 30_000, 100)
      x.proc.kill('SIGSTOP')
      try {
        fs.writeFileSync(go, '')
        await waitFor(() => fs.existsSync(mark), 'the command to end while its owner is frozen', 30_000, 100)
        // Longer than a member is kept in a view without news (12 s): on waking, the owner sees nobody at first.
        await new Promise((resolve) => setTimeout(resolve, 14_000))
      } finally {
        x.proc.kill('SIGCONT')
      }
      const w = await wait(x, id)
      const rec = await show(x, id)
      expect(w.code, JSON.stringify(rec, null, 1)).toBe(0)
      expect(rec.attempts.map((a) => a.state)).toEqual(['succeeded'])
      expect((await runCli('vgrid', ['task', 'log', id], { home: x.home, timeoutMs: 10_000 })).stdout).toBe('one\ntwo\n')
    } finally {
      await Promise.all([x.stop(), y.stop(), z.stop()])
    }
  }, 120_000)
})

describe('a task whose owner is killed while its outputs come back', () => {
  it('has them offered again when the owner is back: every output file arrives whole, yours are kept', async () => {
    const [x, y] = await startGrid(2, { args: guestShare(share) })
    let x2: AgentProc | undefined
    try {
      await waitFor(() => fs.existsSync(path.join(x.home, 'peers.json')), 'the owner to save its known peers', 15_000, 100)
      const ws = workspace({ 'mine.txt': 'before\n' })
      const go = goFile('go')
      const ended = goFile('ended')
      // Outputs big enough that bringing them back takes a while here: 40 files of 4 MiB.
      const make = 'for i in $(seq 1 40); do head -c 4194304 /dev/urandom > "out$i.bin"; done; sha256sum out*.bin > sums.txt'
      const [id] = await submit(x, ['--on', y.peer, 'sh', '-c', `${hold(go)}; echo changed > mine.txt; ${make}; touch ${ended}`], ws)
      await waitFor(async () => (await show(x, id)).state === 'running', 'the task to run', 30_000, 100)
      // The user edits a file the command also changes, while it runs.
      fs.writeFileSync(path.join(ws, 'mine.txt'), 'edited here\n')
      fs.writeFileSync(go, '')
      await waitFor(() => fs.existsSync(ended), 'the command to end', 60_000, 20)
      // The owner is killed while the outputs come back (some may have arrived).
      await waitFor(() => fs.readdirSync(ws).some((f) => f.startsWith('out') || f.includes('vgrid')), 'the outputs to start coming back', 30_000, 5)
        .catch(() => { console.log('no output file had arrived yet: the owner is killed before the pull') })
      x2 = await restart(x, 'SIGKILL', [y])
      const w = await wait(x2, id, 120_000)
      const rec = await show(x2, id)
      expect(w.code, `${JSON.stringify(rec, null, 1)}\n${x2.output()}`).toBe(0)
      expect(rec.attempts.map((a) => a.state)).toEqual(['succeeded'])
      // Every file whole: sha256sum -c in the workspace.
      const sums = read(ws, 'sums.txt').trim().split('\n')
      expect(sums).toHaveLength(40)
      const { createHash } = await import('node:crypto')
      for (const line of sums) {
        const [hash, name] = line.split(/\s+/)
        expect(createHash('sha256').update(fs.readFileSync(path.join(ws, name!))).digest('hex'), name).toBe(hash)
      }
      // The user's edit is kept; the command's version is beside it.
      expect(read(ws, 'mine.txt')).toBe('edited here\n')
      const conflict = fs.readdirSync(ws).find((f) => f.startsWith('mine.txt.vgrid-conflict'))
      expect(conflict).toBeDefined()
      expect(read(ws, conflict!)).toBe('changed\n')
    } finally {
      await Promise.all([y.stop(), x2?.stop(), x.stop()])
    }
  }, 240_000)
})
