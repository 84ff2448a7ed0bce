/**
 * The owner policy, end to end on a two-agent loopback grid: --max-tasks, --nice,
 * --only-when-idle with a simulated owner (VGRID_OWNER_LOAD_FILE, fast timings through
 * VGRID_OWNER_LOAD_TIMING), and `vgrid agent set` changing a running agent.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import pty from '@lydell/node-pty'
import { BIN, peersOf, runCli, startAgent, startCli, stopAll, tempDir, waitFor, type AgentProc } from '../helpers/procs.js'
import type { TaskRecord } from '../../src/agent/tasks/types.js'

let a: AgentProc
let b: AgentProc
const dir = tempDir('vgrid-policy-')
const loadFile = (x: AgentProc): string => path.join(dir, x === a ? 'owner-a' : 'owner-b')
/** The simulated owner of a machine: its load in % of the cores. */
const owner = (x: AgentProc, pct: number): void => { fs.writeFileSync(loadFile(x), `${pct}\n`) }

beforeAll(async () => {
  fs.writeFileSync(path.join(dir, 'owner-a'), '0\n')
  fs.writeFileSync(path.join(dir, 'owner-b'), '0\n')
  // Sampled every 100 ms, a window of one sample, idle again after 300 ms quiet.
  const env = (name: string): Record<string, string> => ({ VGRID_OWNER_LOAD_FILE: path.join(dir, name), VGRID_OWNER_LOAD_TIMING: '100,100,300' })
  a = await startAgent({ env: env('owner-a') })
  b = await startAgent({ join: a.token, env: env('owner-b') })
  await waitFor(async () => (await peersOf(a)).length === 2 && (await peersOf(b)).length === 2, 'both agents to see each other', 20_000, 100)
})
afterAll(async () => {
  await stopAll()
  fs.rmSync(dir, { recursive: true, force: true })
})

/** Field 19 of /proc/PID/stat: the niceness. */
function niceOf (pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])
}

async function peer (from: AgentProc, of: AgentProc): Promise<Record<string, any> | undefined> {
  return (await peersOf(from)).find((p) => p.peer === of.peer)
}

async function set (x: AgentProc, args: string[]): Promise<string> {
  const r = await x.vgrid(['agent', 'set', ...args])
  expect(r.code, r.stderr).toBe(0)
  return r.stdout
}

async function show (x: AgentProc, id: string): Promise<TaskRecord> {
  const r = await x.vgrid(['task', 'show', id, '--json'])
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as TaskRecord
}

describe('owner policy', () => {
  it('runs guests, and all they start, at the niceness of --nice (10 by default), changed live', async () => {
    const run = startCli('vrun', ['--on', a.peer, 'sh', '-c', 'sleep 60 & echo $$ $!; read x'], { home: a.home, cwd: a.workspace })
    const [sh, child] = (await waitFor(() => /^(\d+) (\d+)\n/.exec(run.stdout()) ?? undefined, 'the command to print its pids')).slice(1).map(Number)
    expect(niceOf(sh!)).toBe(10)
    expect(niceOf(child!)).toBe(10)
    run.child.stdin?.end('\n')
    expect((await run.done).code).toBe(0)

    expect(await set(a, ['--nice', '15'])).toMatch(/niceness\s+15/)
    const r = await a.vrun(['--on', a.peer, 'sh', '-c', 'cut -d" " -f19 /proc/self/stat'])
    expect(r.stdout).toBe('15\n')
  })

  it('runs at most --max-tasks commands at once, and says so in its advertisement', async () => {
    await set(a, ['--max-tasks', '1'])
    const holder = startCli('vrun', ['--on', a.peer, 'sh', '-c', 'echo holding; read x'], { home: a.home, cwd: a.workspace })
    await waitFor(() => holder.stdout().includes('holding'), 'the first run to start')
    const second = startCli('vrun', ['--on', a.peer, 'echo', 'second'], { home: a.home, cwd: a.workspace, env: { VGRID_VERBOSE: '1' } })
    await waitFor(() => second.stderr().includes('waiting'), 'the second run to wait')
    expect(second.stderr()).toMatch(/busy/)
    // The other member's view shows it full: nothing free, and why.
    const seen = await waitFor(async () => { const p = await peer(b, a); return p?.load.running === 1 ? p : undefined }, 'b to see a run one command')
    expect(seen.offer.maxTasks).toBe(1)
    expect(seen.load.cpusFree).toBe(0)
    holder.child.stdin?.end('go\n')
    expect((await holder.done).code).toBe(0)
    const r = await second.done
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('second\n')
    expect(await set(a, ['--max-tasks', 'unlimited'])).toMatch(/at once\s+no limit/)
  })

  it('vgrid agent set changes what a running agent lends, at once and for good', async () => {
    const before = await peer(a, b)
    expect(before?.offer.cpus).toBeGreaterThan(0)
    const out = await set(b, ['--cpus', '1'])
    expect(out).toMatch(/lends 1 of \d+ cores/)
    expect(out).toContain(`saved in ${path.join(b.home, 'config')}`)
    await waitFor(async () => (await peer(a, b))?.offer.cpus === 1, 'a to see b lend 1 core', 10_000, 100)
    expect(JSON.parse(fs.readFileSync(path.join(b.home, 'config'), 'utf8'))).toMatchObject({ cpus: 1 })

    const bad = await b.vgrid(['agent', 'set', '--nice', '25'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--nice: "25" is not valid/)
    const other = await b.vgrid(['agent', 'set', '--join', 'x'])
    expect(other.code).toBe(2)
    expect(other.stderr).toMatch(/does not apply to vgrid agent set/)
  })

  it('SIGHUP reloads the policy from the config file; flags given at start still win; a bad file changes nothing', async () => {
    const c = await startAgent({ join: a.token, args: ['--nice', '12'] })
    const policy = async (): Promise<string> => await set(c, [])
    expect(await policy()).toMatch(/lends \d+ of \d+ cores/)
    fs.writeFileSync(path.join(c.home, 'config'), JSON.stringify({ cpus: 1, maxTasks: 3, nice: 19 }))
    c.proc.kill('SIGHUP')
    await waitFor(() => c.output().includes('SIGHUP, reloaded the owner policy'), 'the agent to reload')
    const now = await policy()
    expect(now).toMatch(/lends 1 of \d+ cores/)
    expect(now).toMatch(/at once\s+at most 3 commands/)
    expect(now).toMatch(/niceness\s+12/) // --nice at start wins over the file
    await waitFor(async () => (await peer(a, c))?.offer.cpus === 1, 'a to see c lend 1 core', 10_000, 100)

    fs.writeFileSync(path.join(c.home, 'config'), '{"cpus": "many"')
    c.proc.kill('SIGHUP')
    await waitFor(() => c.output().includes('SIGHUP, kept the owner policy in force'), 'the agent to refuse the bad file')
    expect(await policy()).toMatch(/lends 1 of \d+ cores/)
    // and it still runs commands
    expect((await c.vrun(['--on', c.peer, 'echo', 'alive'])).stdout).toBe('alive\n')
    await c.stop()
  })

  it('under a terminal, SIGHUP is the terminal going away: the agent stops cleanly', async () => {
    const home = tempDir()
    // The terminal is the agent's input and output; its errors go to a file. node-pty drops
    // what it has not read 200 ms after the child exits, and a loaded machine's event loop
    // can miss that: two CI runs lost the agent's last line so.
    const errors = path.join(home, 'stderr')
    const term = pty.spawn('/bin/sh', ['-c', `exec '${BIN.vgrid}' agent --listen /ip4/127.0.0.1/tcp/0 2>'${errors}'`], { cols: 100, rows: 30, env: { ...process.env, VGRID_HOME: home } })
    let out = ''
    term.onData((d) => { out += d })
    const exited = new Promise<{ exitCode: number, signal?: number }>((resolve) => { term.onExit(resolve) })
    await waitFor(() => out.includes('To add another machine'), 'the agent under a terminal to start', 20_000)
    // at once, as the banner shows: its handlers are in place before it is printed
    process.kill(term.pid, 'SIGHUP')
    // (killed by the signal itself, node-pty says exitCode 0 too: the signal tells them apart)
    const { exitCode, signal } = await exited
    expect({ exitCode, signal: signal ?? 0 }).toEqual({ exitCode: 0, signal: 0 })
    expect(fs.readFileSync(errors, 'utf8')).toContain('vgrid: SIGHUP, stopping the agent')
    expect(fs.existsSync(path.join(home, 'agent.sock'))).toBe(false)
  })

  it('with --only-when-idle lends only while the owner is away, and moves a guest elsewhere when the owner comes back', async () => {
    owner(a, 90)
    owner(b, 0)
    expect(await set(a, ['--only-when-idle'])).toMatch(/only while its owner is idle/)
    await set(b, ['--only-when-idle'])
    // a's owner is busy: it shows nothing free and takes nothing; b lends.
    await waitFor(async () => {
      const [pa, pb] = [await peer(b, a), await peer(a, b)]
      return pa?.load.ownerBusy === true && pa.load.cpusFree === 0 && pa.offer.onlyWhenIdle === true &&
        pb !== undefined && pb.load.ownerBusy === undefined && pb.load.cpusFree > 0
    }, 'a to be busy and b idle in the views', 10_000, 100)
    const refused = startCli('vrun', ['--on', a.peer, 'echo', 'lent'], { home: b.home, cwd: b.workspace, env: { VGRID_VERBOSE: '1' } })
    await waitFor(() => refused.stderr().includes('waiting'), 'a run on the busy member to wait')
    expect(refused.stderr()).toMatch(/busy/)

    // A guest on b, with a retry, waiting for a gate the test opens only once it moved.
    const gate = path.join(dir, 'gate')
    const sub = await runCli('vbatch', ['--retries', '1', 'sh', '-c', `echo "on $VGRID_PEER"; while [ ! -e ${gate} ]; do sleep 0.05; done; echo through`], { home: a.home, cwd: a.workspace })
    expect(sub.code, sub.stderr).toBe(0)
    const id = sub.stdout.trim()
    await waitFor(async () => { const t = await show(a, id); return t.state === 'running' && t.peer === b.peer }, 'the task to run on b', 15_000, 100)

    // a's owner leaves, b's comes back: the guest on b is stopped and placed again, on a.
    owner(a, 0)
    owner(b, 95)
    let last: TaskRecord | undefined
    const t = await waitFor(async () => { const t = last = await show(a, id); return t.attempts.length === 2 && t.state === 'running' ? t : undefined }, 'the task to be placed again', 20_000, 100)
      .catch((err) => { throw new Error(`${err}\n${JSON.stringify(last, null, 1)}\nA:${a.output()}\nB:${b.output()}`) })
    expect(t.attempts[0]).toMatchObject({ peer: b.peer, state: 'lost' })
    expect(t.attempts[0]!.error).toMatch(/owner of .* came back/)
    expect(t.attempts[1]!.peer).toBe(a.peer)
    // the run that waited for a took its turn once a's owner had gone
    const lent = await refused.done
    expect(lent.code).toBe(0)
    expect(lent.stdout).toBe('lent\n')

    fs.writeFileSync(gate, '')
    const done = await runCli('vgrid', ['task', 'wait', id], { home: a.home, timeoutMs: 20_000 })
    expect(done.code).toBe(0)
    const log = await a.vgrid(['task', 'log', id])
    expect(log.stdout).toBe(`on ${b.peer}\non ${a.peer}\nthrough\n`)
    expect(log.stderr).toMatch(/came back.*placing it again/)

    // A plain vrun has no retries: it ends, saying why.
    const plain = startCli('vrun', ['--on', a.peer, 'sh', '-c', 'echo in; sleep 30'], { home: a.home, cwd: a.workspace })
    await waitFor(() => plain.stdout().includes('in'), 'the vrun to start')
    owner(a, 90)
    const r = await plain.done
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/the owner of .* came back: the command was stopped/)
  })
})
