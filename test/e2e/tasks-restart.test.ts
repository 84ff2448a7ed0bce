/**
 * An owner agent restarted (SIGKILL, SIGTERM, a clean stop) while its tasks wait, run here or
 * run elsewhere, through the real binaries: what it keeps, what it stops, what it places
 * again. A heavy suite (`npm run test:heavy`): each test stops and starts agents.
 */
import { describe, it, expect, afterAll } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { startGrid, startAgent, startCli, stopAll, waitFor, sharedDir, guestShare, processRuns, runtimeDirOf, type AgentProc } from '../helpers/procs.js'
import { workspace, read, submitOne, show, listAll, wait, ended } from '../helpers/tasks.js'
import type { TaskRecord } from '../../src/agent/tasks/types.js'
import { RUNNING_LOG } from '../../src/exec/orphans.js'

afterAll(async () => { await stopAll() })

/** Where the tests leave `go` files for their commands: shared with the agents' guests. */
const share = sharedDir()
/** A `go` file a command waits for, in a directory the guests see. */
function goFile (name: string): string {
  return path.join(share, `${name}-${Math.random().toString(16).slice(2)}`)
}

describe('an owner restarted', () => {
  const running = processRuns

  it('stops a command of its own that a SIGKILL left running, and marks the task lost', async () => {
    const x = await startAgent()
    let x2: AgentProc | undefined
    try {
      const ws = workspace()
      const id = await submitOne(x, ['sh', '-c', 'echo $$ > pid; exec sleep 300'], ws)
      const pid = await waitFor(() => {
        const n = Number(fs.existsSync(path.join(ws, 'pid')) ? read(ws, 'pid').trim() : '')
        return n > 0 ? n : undefined
      }, 'the command to start', 20_000, 50)
      // Killed once the agent has written the command down (it does so right after the fork;
      // the command's own pid file can come first on a busy machine, and that instant is not
      // what this test is about).
      const runningLog = path.join(x.home, RUNNING_LOG)
      const log = (): string => { try { return fs.readFileSync(runningLog, 'utf8') } catch { return '' } }
      await waitFor(() => log().includes('"a":'), 'the agent to list the command', 10_000, 20)
      const died = new Promise((resolve) => x.proc.once('exit', resolve))
      x.proc.kill('SIGKILL')
      await died
      // Nothing else takes it down: it leads its own process group.
      expect(running(pid)).toBe(true)

      // What the killed agent left listed, for the failure message.
      const listed = log()
      const stat = (): string => { try { return fs.readFileSync(`/proc/${pid}/stat`, 'utf8') } catch { return 'gone' } }
      x2 = await startAgent({ home: x.home })
      const restarted = x2
      await waitFor(() => !running(pid), 'the restarted agent to stop the command left running', 15_000, 50).catch((err: Error) => {
        throw new Error(`${err.message}\ncommand pid ${pid}, /proc stat: ${stat()}\nlisted in ${RUNNING_LOG} before the restart: ${listed}\nrestarted agent's output:\n${restarted.output()}`)
      })
      const rec = await ended(x2, id)
      expect(rec.state).toBe('lost')
      expect(rec.attempts).toHaveLength(1)
      expect(x2.output()).toContain('stopped 1 command that the previous run of this agent left running')
    } finally {
      await Promise.all([x2?.stop(), x.stop()])
    }
  }, 60_000)

  it('keeps its records and logs, places an interrupted task again and runs what waited for it', async () => {
    const [x, y] = await startGrid(2)
    let x2: AgentProc | undefined
    try {
      const ws = workspace()
      const fin = await submitOne(x, ['sh', '-c', 'echo fin-out; echo fin-err >&2; echo fin > fin.txt'], ws)
      expect((await wait(x, fin)).code).toBe(0)
      expect(read(ws, 'fin.txt')).toBe('fin\n')
      // The restarted agent finds the grid again through the members it saved.
      await waitFor(() => fs.existsSync(path.join(x.home, 'peers.json')), 'the owner to save its known peers', 15_000, 100)

      // Runs on the owner itself (one on another member would run on through the restart: faults.test.ts).
      const one = await submitOne(x, ['--retries', '1', '--on', x.peer, '--name', 'one', 'sh', '-c', 'echo started; sleep 4; echo one > one.txt'], ws)
      const two = await submitOne(x, ['--name', 'two', '--after-success', 'one', 'sh', '-c', 'cat one.txt > two.txt'], ws)
      await waitFor(async () => (await show(x, one)).state === 'running', 'step one to run', 20_000, 50)
      const died = new Promise((resolve) => x.proc.once('exit', resolve))
      x.proc.kill('SIGKILL')
      await died

      const r2 = await startAgent({ home: x.home })
      x2 = r2
      expect(r2.peer).toBe(x.peer)
      await waitFor(async () => (await r2.vgrid(['peers', '--json'])).stdout.includes(y.peer), 'the restarted owner to see the other member', 20_000, 100)

      // The finished task kept its record and its log.
      const finRec = await show(r2, fin)
      expect(finRec.state).toBe('succeeded')
      const log = await y.vgrid(['task', 'log', fin])
      expect(log.stdout).toBe('fin-out\n')
      expect(log.stderr).toBe('fin-err\n')

      // Step one was running: it had a retry, so it is placed again, and step two follows.
      const w = await wait(r2, two, 60_000)
      const oneRec = await show(r2, one)
      const twoRec = await show(y, two)
      expect(oneRec.state, oneRec.error).toBe('succeeded')
      expect(oneRec.attempts).toHaveLength(2)
      expect(oneRec.attempts[0].state).toBe('lost')
      expect(oneRec.attempts[1].state).toBe('succeeded')
      expect(twoRec.state, twoRec.error).toBe('succeeded')
      expect(w.code).toBe(0)
      expect(twoRec.started!).toBeGreaterThanOrEqual(oneRec.ended!)
      expect(read(ws, 'one.txt')).toBe('one\n')
      expect(read(ws, 'two.txt')).toBe('one\n')
      // Every record is still listed, from either member.
      const ids = (await listAll(y)).map((t) => t.id)
      for (const id of [fin, one, two]) expect(ids).toContain(id)
    } finally {
      // The main grid's agents stay for the other tests; this one's go now.
      await Promise.all([y.stop(), x2?.stop(), x.stop()])
    }
  }, 120_000)
  it('keeps the sub-tasks of a task whose owner stopped: they end, and the parent ends once its owner is back', async () => {
    const [x, y] = await startGrid(2, { args: guestShare(share) })
    let x2: AgentProc | undefined
    try {
      await waitFor(() => fs.existsSync(path.join(x.home, 'peers.json')), 'the owner to save its known peers', 15_000, 100)
      const ws = workspace()
      const go = goFile('kid')
      const parent = await submitOne(x, ['--on', y.peer, 'sh', '-c', `vbatch --name kid sh -c "while [ ! -e ${go} ]; do sleep 0.05; done; echo kid > kid.txt"; echo parent done`], ws)
      // The sub-task is y's, which runs the parent.
      const kid = await waitFor(async () => {
        const r = await y.vgrid(['task', 'list', '--json'])
        const k = (JSON.parse(r.stdout).tasks as TaskRecord[]).find((t) => t.parent === parent)
        return k?.state === 'running' ? k.id : undefined
      }, 'the sub-task to run', 30_000, 100)
      expect((await x.stop('SIGTERM')).code).toBe(0)
      fs.writeFileSync(go, '')
      // The task lives on its executor: its sub-task is not cancelled because the owner went away.
      const rec = await ended(y, kid, 20_000)
      expect(rec.state).toBe('succeeded')
      const r2 = await startAgent({ home: x.home, args: guestShare(share) })
      x2 = r2
      const w = await wait(r2, parent, 60_000)
      expect(w.code, w.stderr).toBe(0)
      const p = await show(r2, parent)
      expect(p.children).toEqual([kid])
      expect(p.attempts.map((a) => a.state)).toEqual(['succeeded'])
      expect(read(ws, 'kid.txt')).toBe('kid\n')
    } finally {
      await Promise.all([y.stop(), x2?.stop(), x.stop()])
    }
  }, 120_000)

  it('stopped with SIGTERM, keeps what ran and what waited: placed again after its restart', async () => {
    const [x, y] = await startGrid(2, { env: { DEBUG: 'vgrid:tasks' }, args: guestShare(share) })
    let x2: AgentProc | undefined
    try {
      const ws = workspace()
      await waitFor(() => fs.existsSync(path.join(x.home, 'peers.json')), 'the owner to save its known peers', 15_000, 100)
      // The first and third wait for a file made only after the restart: both surely still run
      // when the owner stops, however slow the machine.
      const go = goFile('go')
      const hold = `while [ ! -e ${go} ]; do sleep 0.05; done`
      // Runs on the other member; the second waits for its cores (y lends 2).
      const one = await submitOne(x, ['--retries', '1', '--on', y.peer, '--cpus', '2', 'sh', '-c', `${hold}; echo one > one.txt`], ws)
      await waitFor(async () => (await show(x, one)).state === 'running', 'the first to run', 20_000, 50)
      const two = await submitOne(x, ['--on', y.peer, '--cpus', '2', 'sh', '-c', 'echo two > two.txt'], ws)
      expect((await show(x, two)).state).toBe('queued')
      // Runs here: the stopping agent's own SIGTERM to it is no failure of the command.
      const three = await submitOne(x, ['--retries', '1', '--on', x.peer, '--cpus', '0', 'sh', '-c', `${hold}; echo three > three.txt`], ws)
      await waitFor(async () => (await show(x, three)).state === 'running', 'the third to run', 20_000, 50)
      // Waited for from the other member: it waits through the owner's restart.
      const waiting = startCli('vgrid', ['task', 'wait', one], { home: y.home, timeoutMs: 90_000 })
      await waitFor(() => x.output().includes(`waits for task ${one}`), 'the wait to reach the owner', 20_000, 50)

      expect((await x.stop('SIGTERM')).code).toBe(0)
      const r2 = await startAgent({ home: x.home, args: guestShare(share) })
      x2 = r2
      await waitFor(async () => (await r2.vgrid(['peers', '--json'])).stdout.includes(y.peer), 'the restarted owner to see the other member', 20_000, 100)
      fs.writeFileSync(go, '')

      for (const id of [one, two, three]) { const w = await wait(r2, id, 60_000); expect(w.code, `${id}: ${w.stderr} ${JSON.stringify(await show(r2, id))}`).toBe(0) }
      const waited = await waiting.done
      expect(waited.code, waited.stderr).toBe(0)
      // It ran on the other member, detached: it went on through the owner's restart.
      const oneRec = await show(r2, one)
      expect(oneRec.attempts.map((a) => a.state)).toEqual(['succeeded'])
      expect((await show(r2, two)).attempts.map((a) => a.state)).toEqual(['succeeded'])
      // It ran on the owner itself, which stopped it: placed again, and separated in its log.
      const threeRec = await show(r2, three)
      expect(threeRec.attempts.map((a) => a.state)).toEqual(['lost', 'succeeded'])
      // (`restarted` when the stopping agent ran out of time to write it down)
      expect(threeRec.attempts[0].error).toMatch(/the owning agent (stopped|restarted)/)
      expect((await r2.vgrid(['task', 'log', three])).stderr).toMatch(/^--- attempt 2 on \S+ \(…\w+\), after: the owning agent (stopped|restarted) ---$/m)
      expect(read(ws, 'one.txt')).toBe('one\n')
      expect(read(ws, 'two.txt')).toBe('two\n')
      expect(read(ws, 'three.txt')).toBe('three\n')
    } finally {
      await Promise.all([y.stop(), x2?.stop(), x.stop()])
    }
  }, 120_000)

  it('keeps its pipes and guests\' homes in memory: a SIGKILL\'s leftovers cleared at the next start, gone after a clean stop', async () => {
    const x = await startAgent()
    let x2: AgentProc | undefined
    try {
      const rt = runtimeDirOf(x.home)
      expect(rt.startsWith('/dev/shm/') || rt.startsWith(`${process.env.XDG_RUNTIME_DIR ?? '/nonexistent'}/`)).toBe(true)
      expect(fs.statfsSync(rt).type).toBe(0x01021994)
      // the stock of FIFOs for commands' stdio lives there, none in the home
      await waitFor(() => fs.readdirSync(path.join(rt, 'fifos')).length > 0, 'the stock of FIFOs', 10_000, 20)
      expect(fs.existsSync(path.join(x.home, 'fifos'))).toBe(false)
      const r = await x.vrun(['--no-sync', 'sh', '-c', 'echo out; echo err >&2'])
      expect([r.code, r.stdout, r.stderr]).toEqual([0, 'out\n', 'err\n'])
      fs.mkdirSync(path.join(rt, 'guests/left-by-the-killed-one'))
      await x.stop('SIGKILL')
      expect(fs.existsSync(path.join(rt, 'guests/left-by-the-killed-one'))).toBe(true)
      x2 = await startAgent({ home: x.home })
      expect(runtimeDirOf(x.home)).toBe(rt)
      expect(fs.readdirSync(path.join(rt, 'guests'))).toEqual([])
      expect((await x2.stop('SIGTERM')).code).toBe(0)
      expect(fs.existsSync(rt)).toBe(false)
    } finally {
      await Promise.all([x2?.stop(), x.stop()])
    }
  }, 60_000)
})
