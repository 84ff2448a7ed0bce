/**
 * Issue 14's figures: a grid of N real agent processes on this machine, all but the first
 * joining at the same moment through the first one's token (as a lab does when the machines
 * come up after a power cut). For each N (BENCH_SCALE_N, default "16,32"):
 * - the time until every agent sees every member, from the joiners' spawn and from the
 *   moment the last of them answered on its control socket (its own start excluded: on two
 *   cores, 31 agents importing libp2p at once take seconds before any of them can gossip);
 * - whether every view stays complete for BENCH_SCALE_HOLD_S seconds (default 120), checked
 *   every second: the smallest view seen;
 * - idle CPU per agent (mean % of one core over the hold, from /proc) and RSS per agent;
 * - `vbatch -N 500 --no-sync true` through the real binary on the first agent: time to the
 *   last shard's end and how many members ran a shard;
 * - 10 % of the agents killed with SIGKILL: the time until every other view dropped them.
 * And, first, the same join of N grid nodes inside this one process: the grid's own part,
 * without N processes importing libp2p on the same cores.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { BIN, ROOT, tempDir, waitFor } from '../test/helpers/procs.js'
import { call } from '../src/agent/control/client.js'
import type { PeerAd, PeerView } from '../src/grid/types.js'
import { createGrid, createSwarmKey, loadOrCreateIdentity, type Grid } from '../src/grid/index.js'
import type { Figure } from './grid-vrun.js'
import { median, rssBytes } from './stats.js'

const SIZES = (process.env.BENCH_SCALE_N ?? '16,32').split(',').map(Number).filter((n) => Number.isInteger(n) && n >= 2)
const HOLD_S = Number(process.env.BENCH_SCALE_HOLD_S ?? 120)
const SHARDS = Number(process.env.BENCH_SCALE_SHARDS ?? 500)
const CONVERGE_TARGET_MS = 5_000
const IDLE_CPU_TARGET_PERCENT = 1
/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ: 100 on Linux). */
const USER_HZ = 100

interface Agent { home: string, proc: ChildProcess, peer: string, output: () => string }

function spawnAgent (join?: string): { home: string, proc: ChildProcess, output: () => string } {
  const home = tempDir('vgrid-scale-')
  const args = ['agent', '--listen', '/ip4/127.0.0.1/tcp/0', ...(join !== undefined ? ['--join', join] : [])]
  const proc = spawn(BIN.vgrid, args, { cwd: ROOT, env: { ...process.env, VGRID_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  proc.stdout!.on('data', (d: Buffer) => { output += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { output += d.toString() })
  return { home, proc, output: () => output }
}

/** Waits until the agent answers on its control socket; returns its peer id. */
async function ready (a: { home: string, proc: ChildProcess, output: () => string }): Promise<Agent> {
  const status = await waitFor(async () => {
    if (a.proc.exitCode !== null) throw new Error(`an agent exited at start:\n${a.output()}`)
    if (!fs.existsSync(path.join(a.home, 'agent.sock'))) return undefined
    return (await call(a.home, { t: 'status' })).status
  }, 'an agent to start', 120_000, 50)
  return { ...a, peer: status.peer }
}

async function view (a: Agent): Promise<PeerView[]> {
  return (await call(a.home, { t: 'peers' }, { client: 'bench' })).peers
}

/** Sizes of every agent's view, asked of all at once; an agent that does not answer in time (overloaded) is -1. */
async function viewSizes (agents: Agent[]): Promise<number[]> {
  return await Promise.all(agents.map(async (a) => await view(a).then((v) => v.length, () => -1)))
}

function cpuTicks (pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields 14 and 15 of stat(5), counted from the state (field 3) here
  return Number(f[11]) + Number(f[12])
}

/** Jiffies the whole machine spent, and of them idle (with iowait), from /proc/stat. */
function machineTicks (): { total: number, idle: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  return { total: f.reduce((x, y) => x + y, 0), idle: f[3]! + f[4]! }
}


async function stopAgents (agents: Array<{ proc: ChildProcess }>): Promise<void> {
  await Promise.all(agents.map(async ({ proc }) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise((resolve) => proc.once('exit', resolve))
    const killer = setTimeout(() => { proc.kill('SIGKILL') }, 10_000)
    proc.kill('SIGTERM')
    await exited
    clearTimeout(killer)
  }))
}

async function runVbatch (home: string, args: string[]): Promise<string[]> {
  const child = spawn(process.execPath, [BIN.vbatch, ...args], { cwd: tempDir('vgrid-scale-ws-'), env: { ...process.env, VGRID_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const code = await new Promise((resolve) => child.on('close', resolve))
  if (code !== 0) throw new Error(`vbatch ${args.join(' ')} exited ${String(code)}: ${err}`)
  return out.split('\n').filter((l) => l !== '')
}

async function benchSize (n: number): Promise<Figure[]> {
  const all: Array<{ proc: ChildProcess }> = []
  const say = (s: string): void => { process.stdout.write(`  [${n}] ${s}\n`) }
  try {
    const first = spawnAgent()
    all.push(first)
    const a0 = await ready(first)
    const token = (await call(a0.home, { t: 'join-token' })).token
    const t0 = performance.now()
    const wall0 = Date.now()
    const m0 = machineTicks()
    const spawned = Array.from({ length: n - 1 }, () => spawnAgent(token))
    all.push(...spawned)
    let lastUp = 0
    const rest = await Promise.all(spawned.map(async (s) => {
      const a = await ready(s)
      lastUp = Math.max(lastUp, performance.now())
      return a
    }))
    const agents = [a0, ...rest]
    say(`all ${n} agents answer ${Math.round(lastUp - t0)} ms after the joiners were spawned`)
    let lastSay = performance.now()
    await waitFor(async () => {
      const sizes = await viewSizes(agents)
      if (performance.now() - lastSay > 5000) { lastSay = performance.now(); say(`views so far: ${sizes.join(' ')}`) }
      return sizes.every((s) => s === n)
    }, `every view to hold ${n} members`, 120_000, 100)
    const tFull = performance.now()
    const m1 = machineTicks()
    // the floor of the join on this machine: were the cores busy all along?
    const busy = 100 * (1 - (m1.idle - m0.idle) / (m1.total - m0.total))
    const startCpuS = agents.reduce((s, a) => s + cpuTicks(a.proc.pid!), 0) / USER_HZ
    const fromSpawn = tFull - t0
    const fromUp = tFull - lastUp
    say(`every view complete ${Math.round(fromSpawn)} ms after spawn, ${Math.round(fromUp)} ms after the last agent answered; ` +
      `the machine's cores were ${busy.toFixed(0)} % busy meanwhile; the agents had used ${startCpuS.toFixed(1)} CPU-seconds`)

    // hold: every view checked every second; CPU counted once the joins have settled (dials,
    // duplicate connections closed, the mesh formed): over the last three quarters
    const h0 = performance.now()
    let smallest = n
    let dips = 0
    let unanswered = 0
    let ticks0: number[] | undefined
    let c0 = 0
    while (performance.now() - h0 < HOLD_S * 1000) {
      if (ticks0 === undefined && performance.now() - h0 >= HOLD_S * 250) {
        ticks0 = agents.map((a) => cpuTicks(a.proc.pid!))
        c0 = performance.now()
      }
      const all = await viewSizes(agents)
      unanswered += all.filter((s) => s < 0).length
      const sizes = all.filter((s) => s >= 0)
      const min = Math.min(...sizes)
      if (min < n) { dips++; say(`a view held ${min} of ${n} members at ${Math.round((performance.now() - h0) / 1000)} s`) }
      smallest = Math.min(smallest, min)
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
    const holdS = (performance.now() - h0) / 1000
    const idleS = (performance.now() - c0) / 1000
    const cpu = agents.map((a, i) => (cpuTicks(a.proc.pid!) - ticks0![i]!) / USER_HZ / idleS * 100)
    const conns = await Promise.all(agents.map(async (a) => (await call(a.home, { t: 'status' })).status.connections))
    const extra = conns.reduce((x, y) => x + y, 0) - n * (n - 1)
    say(`connections beyond one per pair: ${extra}`)
    const gridWarnings = (): string[] => agents.flatMap((a) => a.output().split('\n').filter((l) => / vgrid:grid warn /.test(l))).sort()
    const heldWarnings = gridWarnings()
    say(`grid warnings in the agents' logs until now: ${heldWarnings.length}`)
    // each with its time after the joiners' spawn; the view was complete at fromSpawn
    for (const w of heldWarnings.slice(0, 20)) say(`  +${((Date.parse(w.slice(0, 24)) - wall0) / 1000).toFixed(1)} s ${w.slice(25)}`)
    const rss = agents.map((a) => rssBytes(a.proc.pid!, (p) => fs.readFileSync(p, 'utf8')) / 2 ** 20)
    const meanCpu = cpu.reduce((x, y) => x + y, 0) / n
    say(`held: smallest view ${smallest}; idle CPU per agent mean ${meanCpu.toFixed(2)} %, max ${Math.max(...cpu).toFixed(2)} %; RSS median ${median(rss).toFixed(0)} MiB`)

    // fan-out through the real binary
    const f0 = performance.now()
    const ids = await runVbatch(a0.home, ['-N', String(SHARDS), '--no-sync', 'true'])
    // one wait at a time: hundreds of control connections at once would load the agent measured
    const ends = []
    for (const id of ids) ends.push((await call(a0.home, { t: 'task-wait', id }, { client: 'bench', timeoutMs: 30_000 })).task)
    const fanMs = performance.now() - f0
    const executors = new Set(ends.map((t) => t.peer).filter((p) => p !== undefined))
    const succeeded = ends.filter((t) => t.state === 'succeeded').length
    say(`fan-out of ${SHARDS}: ${succeeded} succeeded in ${Math.round(fanMs)} ms on ${executors.size} members`)

    // 10 % killed
    const killed = agents.slice(1, 1 + Math.max(1, Math.round(n / 10)))
    const alive = agents.filter((a) => !killed.includes(a))
    const gone = new Set(killed.map((a) => a.peer))
    const k0 = performance.now()
    for (const a of killed) a.proc.kill('SIGKILL')
    await waitFor(async () => {
      const views = await Promise.all(alive.map(async (a) => await view(a)))
      return views.every((v) => v.length === alive.length && !v.some((p) => gone.has(p.peer)))
    }, 'the killed agents gone from every view', 60_000, 100)
    const dropMs = performance.now() - k0
    say(`${killed.length} killed agents dropped from every view in ${Math.round(dropMs)} ms`)
    say(`grid warnings after the kill: ${gridWarnings().length - heldWarnings.length} (each survivor says each killed agent vanished)`)

    return [
      { name: `${n} agents: every view complete, from the joiners' spawn`, value: Math.round(fromSpawn), unit: 'ms' },
      { name: `${n} agents: every view complete, from the last agent up`, value: Math.round(fromUp), unit: 'ms', ...(n <= 16 ? { target: `<= ${CONVERGE_TARGET_MS}`, ok: fromUp <= CONVERGE_TARGET_MS } : {}) },
      { name: `${n} agents: machine's cores busy from spawn to every view complete`, value: Math.round(busy), unit: '%' },
      { name: `${n} agents: CPU the agents used from spawn to every view complete`, value: Math.round(startCpuS * 10) / 10, unit: 's' },
      { name: `${n} agents: smallest view over ${Math.round(holdS)} s (checks short of ${n}: ${dips}; no answer within 5 s: ${unanswered})`, value: smallest, unit: 'peer', target: `= ${n}`, ok: smallest === n },
      { name: `${n} agents: connections beyond one per pair (both ends counted)`, value: extra, unit: 'conn', target: '= 0', ok: extra === 0 },
      { name: `${n} agents: idle CPU per agent, mean`, value: Math.round(meanCpu * 100) / 100, unit: '%', ...(n >= 50 ? { target: `<= ${IDLE_CPU_TARGET_PERCENT}`, ok: meanCpu <= IDLE_CPU_TARGET_PERCENT } : {}) },
      { name: `${n} agents: idle CPU per agent, max`, value: Math.round(Math.max(...cpu) * 100) / 100, unit: '%' },
      { name: `${n} agents: RSS per agent, median`, value: Math.round(median(rss)), unit: 'MiB' },
      { name: `${n} agents: RSS per agent, max`, value: Math.round(Math.max(...rss)), unit: 'MiB' },
      { name: `${n} agents: vbatch -N ${SHARDS} --no-sync true, to the last end (${SHARDS - succeeded} failed)`, value: Math.round(fanMs), unit: 'ms' },
      { name: `${n} agents: members that ran a shard`, value: executors.size, unit: 'peer', target: `= ${n}`, ok: executors.size === n && succeeded === SHARDS },
      { name: `${n} agents: ${killed.length} SIGKILLed, dropped from every view`, value: Math.round(dropMs), unit: 'ms' }
    ]
  } finally {
    await stopAgents(all)
  }
}

/**
 * The grid's own part of a join, without 16 processes starting on two cores: n grid nodes in
 * this one process (real libp2p, loopback), all but the first joining through it at once.
 */
async function benchInProcess (n: number): Promise<Figure[]> {
  const swarmKey = createSwarmKey()
  const grids: Grid[] = []
  const start = async (i: number, bootstrap: string[]): Promise<Grid> => {
    const home = tempDir('vgrid-scale-node-')
    const g = await createGrid({ privateKey: await loadOrCreateIdentity(home), swarmKey, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, version: 'bench', startedAt: Date.now(), describe: () => describeFake(`node-${i}`) })
    grids.push(g)
    return g
  }
  try {
    const first = await start(0, [])
    const t0 = performance.now()
    await Promise.all(Array.from({ length: n - 1 }, async (_, i) => await start(i + 1, first.addrs())))
    await waitFor(() => grids.every((g) => g.view().length === n), `every view of ${n} nodes complete`, 120_000, 20)
    const ms = performance.now() - t0
    process.stdout.write(`  [${n} in one process] every view complete ${Math.round(ms)} ms after the joiners started\n`)
    return [{ name: `${n} grid nodes in one process: every view complete, from their start`, value: Math.round(ms), unit: 'ms', target: `<= ${CONVERGE_TARGET_MS}`, ok: ms <= CONVERGE_TARGET_MS }]
  } finally {
    await Promise.allSettled(grids.map(async (g) => { await g.stop() }))
  }
}

function describeFake (host: string): Pick<PeerAd, 'resources' | 'offer' | 'load'> {
  return {
    resources: { host, os: { platform: 'linux', distro: 'bench', release: '1', arch: 'x64' }, cpu: { model: 'bench', cores: 8 }, memBytes: 16 * 2 ** 30, gpus: [] },
    offer: { cpus: 8, memBytes: 16 * 2 ** 30, gpus: [], pools: [], labels: {} },
    load: { cpusFree: 8, memFree: 16 * 2 ** 30, gpusFree: [], running: 0, queued: 0, cpuUtil: 0 }
  }
}

export async function benchScale (): Promise<Figure[]> {
  const figures: Figure[] = []
  for (const n of SIZES) {
    figures.push(...await benchInProcess(n))
    figures.push(...await benchSize(n))
  }
  return figures
}
