/**
 * `npm run sim`: the placement simulator (src/sim) at 1,000 agents. Every placer (vgrid's,
 * an omniscient central one, random) runs the same seeded workload at each load; the runs are
 * shared among worker threads. Prints a table and writes bench/results/sim.json and sim.svg.
 * SIM_AGENTS, SIM_JOBS, SIM_SEED, SIM_LOADS (comma-separated shares, 0.8 or 80) and
 * SIM_WORKERS override the defaults. Exits 1 when the target is missed.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { ROOT } from '../test/helpers/procs.js'
import {
  CHURN_FRACTION, CHURN_MEAN_DOWN_MS, CHURN_MEAN_UP_MS, GOSSIP_LOSS, GOSSIP_MAX_DELAY_MS, GOSSIP_MIN_DELAY_MS,
  NET_MAX_DELAY_MS, NET_MIN_DELAY_MS, PLACERS, WARMUP_FRACTION, makeWorkload, plotSvg, simulate,
  type PlacerKind, type RunSummary
} from '../src/sim/index.js'

const TARGET_LOAD = 0.8
/** vgrid's mean completion at TARGET_LOAD at most this times the omniscient placer's. */
const TARGET_RATIO = 1.1

interface Task { agents: number, jobs: number, seed: number, load: number, placer: PlacerKind }

// A refused claim is a VgridError; its stack trace is all the cost of a refusal here.
Error.stackTraceLimit = 0

function runTask (t: Task): RunSummary & { wallS: number } {
  const t0 = performance.now()
  const w = makeWorkload({ agents: t.agents, jobs: t.jobs, load: t.load, seed: t.seed })
  const { summary } = simulate(w, t.placer, { seed: t.seed })
  return { ...summary, wallS: (performance.now() - t0) / 1000 }
}

function envInt (name: string, dflt: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a whole number > 0, not ${v}`)
  return n
}

function envLoads (): number[] {
  const v = process.env.SIM_LOADS
  if (v === undefined || v === '') return [0.5, 0.6, 0.7, 0.8, 0.9]
  return v.split(',').map((s) => {
    const n = Number(s) > 1.5 ? Number(s) / 100 : Number(s)
    if (!(n > 0 && n < 1.5)) throw new Error(`SIM_LOADS: ${s} is not a load (0.8 or 80)`)
    return n
  })
}

async function runAll (tasks: Task[], workers: number, onDone: (r: RunSummary & { wallS: number }) => void): Promise<void> {
  if (workers <= 1) {
    for (const t of tasks) onDone(runTask(t))
    return
  }
  const queue = [...tasks]
  const self = fileURLToPath(import.meta.url)
  await Promise.all(Array.from({ length: workers }, async () => {
    const w = new Worker(self, { workerData: { worker: true } })
    try {
      for (let t = queue.shift(); t !== undefined; t = queue.shift()) {
        const task = t
        onDone(await new Promise((resolve, reject) => {
          w.once('message', resolve)
          w.once('error', reject)
          w.postMessage(task)
        }))
        w.removeAllListeners('error')
      }
    } finally {
      await w.terminate()
    }
  }))
}

function fmt (n: number, d = 2): string {
  return Number.isFinite(n) ? n.toFixed(d) : '–'
}

function table (runs: RunSummary[]): string {
  const head = ['load', 'placer', 'mean s', 'p50 s', 'p99 s', 'wait s', 'p99 wait', 'cpu util', 'gpu util', 'claims', 'refused', 'timeouts', 'restarts', 'overcommits']
  const rows = runs.map((r) => [
    `${Math.round(r.load * 100)}%`, r.placer, fmt(r.meanCompletionS), fmt(r.p50CompletionS), fmt(r.p99CompletionS, 1), fmt(r.meanWaitS),
    fmt(r.p99WaitS, 1), fmt(r.cpuUtil * 100, 1) + '%', fmt(r.gpuUtil * 100, 1) + '%', String(r.claimsSent), String(r.claimsRefused),
    String(r.claimsTimedOut), String(r.restarts), String(r.overcommits)
  ])
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ')
  return [line(head), ...rows.map(line)].join('\n')
}

async function main (): Promise<void> {
  const agents = envInt('SIM_AGENTS', 1000)
  const jobs = envInt('SIM_JOBS', 30_000)
  const seed = envInt('SIM_SEED', 1)
  const loads = envLoads()
  const workers = envInt('SIM_WORKERS', Math.min(2, os.availableParallelism()))
  const t0 = performance.now()
  const sample = makeWorkload({ agents, jobs, load: TARGET_LOAD, seed })
  process.stdout.write(`placement simulator: ${agents} agents (${Math.round(sample.capacity.cpus)} cores, ${sample.capacity.gpus} GPUs on average), ` +
    `${jobs} jobs, seed ${seed}, loads ${loads.map((l) => `${Math.round(l * 100)}%`).join(' ')}, ${workers} worker${workers === 1 ? '' : 's'}\n`)

  const tasks = loads.flatMap((load) => PLACERS.map((placer) => ({ agents, jobs, seed, load, placer })))
  const runs: Array<RunSummary & { wallS: number }> = []
  await runAll(tasks, workers, (r) => {
    runs.push(r)
    process.stdout.write(`  ${Math.round(r.load * 100)}% ${r.placer.padEnd(10)} ${fmt(r.wallS, 1)} s\n`)
  })
  runs.sort((a, b) => (a.load - b.load) || (PLACERS.indexOf(a.placer as PlacerKind) - PLACERS.indexOf(b.placer as PlacerKind)))
  process.stdout.write(`\n${table(runs)}\n\n`)

  const at = (p: PlacerKind): RunSummary | undefined => runs.find((r) => r.placer === p && Math.abs(r.load - TARGET_LOAD) < 1e-9)
  const v = at('vgrid')
  const o = at('omniscient')
  const ratio = v !== undefined && o !== undefined ? v.meanCompletionS / o.meanCompletionS : NaN
  const overcommits = runs.reduce((s, r) => s + r.overcommits, 0)
  const unfinished = runs.reduce((s, r) => s + r.unfinished, 0)
  const ratioOk = Number.isFinite(ratio) ? ratio <= TARGET_RATIO : undefined
  const ok = ratioOk !== false && overcommits === 0 && unfinished === 0
  if (v !== undefined && o !== undefined) {
    process.stdout.write(`at ${TARGET_LOAD * 100}% load: vgrid mean ${fmt(v.meanCompletionS)} s, omniscient ${fmt(o.meanCompletionS)} s: ratio ${fmt(ratio, 3)} ` +
      `(target ≤ ${TARGET_RATIO}) ${ratioOk === true ? 'ok' : 'MISSED'}\n`)
  }
  process.stdout.write(`overcommits ${overcommits} (target 0), unfinished jobs ${unfinished}: ${overcommits === 0 && unfinished === 0 ? 'ok' : 'MISSED'}\n`)

  const outDir = path.join(ROOT, 'bench', 'results')
  fs.mkdirSync(outDir, { recursive: true })
  const wallS = (performance.now() - t0) / 1000
  const result = {
    bench: 'sim',
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version, platform: `${os.platform()} ${os.release()}` },
    config: {
      agents, jobs, seed, loads, workers,
      capacity: { cpus: Math.round(sample.capacity.cpus), gpus: sample.capacity.gpus },
      gossip: { minDelayMs: GOSSIP_MIN_DELAY_MS, maxDelayMs: GOSSIP_MAX_DELAY_MS, loss: GOSSIP_LOSS },
      net: { minDelayMs: NET_MIN_DELAY_MS, maxDelayMs: NET_MAX_DELAY_MS },
      churn: { fraction: CHURN_FRACTION, meanUpMs: CHURN_MEAN_UP_MS, meanDownMs: CHURN_MEAN_DOWN_MS },
      warmupFraction: WARMUP_FRACTION
    },
    target: { load: TARGET_LOAD, maxRatio: TARGET_RATIO, ratio, overcommits, unfinished, ok },
    wallS,
    results: runs
  }
  fs.writeFileSync(path.join(outDir, 'sim.json'), JSON.stringify(result, null, 2) + '\n')
  fs.writeFileSync(path.join(outDir, 'sim.svg'), plotSvg(runs, `${agents} agents, ${jobs} jobs, seed ${seed}`))
  process.stdout.write(`results in ${path.relative(process.cwd(), outDir) || '.'}/sim.json and sim.svg (${fmt(wallS, 0)} s)\n`)
  if (!ok) process.exitCode = 1
}

if (isMainThread) {
  main().catch((err) => { console.error(err); process.exit(1) })
} else if ((workerData as { worker?: boolean } | undefined)?.worker === true) {
  parentPort?.on('message', (t: Task) => { parentPort?.postMessage(runTask(t)) })
}
