/** Figures of one run: completion times of the measured jobs, utilisation, protocol counters. */
import type { Executor } from './cluster.js'
import { shapeKey } from './placers/order.js'
import type { Busy, Job } from './world.js'

export interface RunSummary {
  placer: string
  /** Offered CPU load, 0–1. */
  load: number
  gpuLoad: number
  agents: number
  jobs: number
  /** Jobs submitted after the warm-up, over which completion figures are taken. */
  measured: number
  /** Jobs that never completed (must be 0). */
  unfinished: number
  /** Submission to end, seconds. */
  meanCompletionS: number
  p50CompletionS: number
  p99CompletionS: number
  /** Submission to the start of the attempt that completed, seconds. */
  meanWaitS: number
  p99WaitS: number
  /** Mean wait by request shape (`cores/GPUs/model`): where the waiting is. */
  waitByShape: Record<string, { jobs: number, meanWaitS: number }>
  /** Share of the cores and GPUs up that ran jobs, between the warm-up and the last submission. */
  cpuUtil: number
  gpuUtil: number
  /** Ledger states found holding more than they lend; must be 0. */
  overcommits: number
  ledgerChecks: number
  /** Placement rounds (a view taken and claims sent, or the job queued). */
  rounds: number
  claimsSent: number
  claimsRefused: number
  claimsTimedOut: number
  /** Job attempts lost with an agent that left. */
  restarts: number
  joins: number
  leaves: number
  events: number
  simulatedS: number
}

export function mean (xs: number[]): number {
  let s = 0
  for (const x of xs) s += x
  return xs.length === 0 ? NaN : s / xs.length
}

/** Nearest-rank percentile, as bench/stats.ts takes it. */
export function percentile (xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = Float64Array.from(xs).sort()
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}

export function completionFigures (jobs: Job[], fromMs: number): Pick<RunSummary, 'measured' | 'unfinished' | 'meanCompletionS' | 'p50CompletionS' | 'p99CompletionS' | 'meanWaitS' | 'p99WaitS' | 'waitByShape'> {
  const done: number[] = []
  const waits: number[] = []
  const byShape = new Map<string, { jobs: number, total: number }>()
  let unfinished = 0
  for (const j of jobs) {
    if (Number.isNaN(j.endedAt)) { unfinished++; continue }
    if (j.spec.submitAt < fromMs) continue
    const wait = (j.startedAt - j.spec.submitAt) / 1000
    done.push((j.endedAt - j.spec.submitAt) / 1000)
    waits.push(wait)
    const k = shapeKey(j.spec.req)
    const s = byShape.get(k) ?? { jobs: 0, total: 0 }
    s.jobs++
    s.total += wait
    byShape.set(k, s)
  }
  const waitByShape: RunSummary['waitByShape'] = {}
  for (const [k, s] of [...byShape].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))) {
    waitByShape[k] = { jobs: s.jobs, meanWaitS: Math.round((s.total / s.jobs) * 1000) / 1000 }
  }
  return {
    measured: done.length,
    unfinished,
    meanCompletionS: mean(done),
    p50CompletionS: percentile(done, 50),
    p99CompletionS: percentile(done, 99),
    meanWaitS: mean(waits),
    p99WaitS: percentile(waits, 99),
    waitByShape
  }
}

function overlap (a0: number, a1: number, b0: number, b1: number): number {
  return Math.max(0, Math.min(a1, b1) - Math.max(a0, b0))
}

/** Used over available core-time (and GPU-time) in [from, to]. */
export function utilisation (busy: Busy[], executors: Executor[], from: number, to: number): { cpuUtil: number, gpuUtil: number } {
  let cpuUsed = 0
  let gpuUsed = 0
  for (const b of busy) {
    const o = overlap(b.start, b.end, from, to)
    cpuUsed += o * b.cpus
    gpuUsed += o * b.gpus
  }
  let cpuUp = 0
  let gpuUp = 0
  for (const e of executors) {
    for (const r of e.runs) {
      const o = overlap(r.start, r.end, from, to)
      cpuUp += o * e.spec.cpus
      gpuUp += o * e.spec.gpus.length
    }
  }
  return { cpuUtil: cpuUp === 0 ? 0 : cpuUsed / cpuUp, gpuUtil: gpuUp === 0 ? 0 : gpuUsed / gpuUp }
}
