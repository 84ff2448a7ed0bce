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
import path from 'node:path'
import { startGrid, startAgent, stopAll, runCli, waitFor, tempDir, sharedDir, guestShare, type AgentProc, type CliResult } from '../helpers/procs.js'
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
      const [x, y] = await startGrid(2, { args: guestShare(share) })
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
