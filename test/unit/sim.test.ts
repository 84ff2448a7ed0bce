/**
 * The placement simulator (src/sim): small seeded runs, so simulated figures can be asserted
 * exactly. 100 agents and 4,000 jobs at 90 % load take well under a second per placer.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { ADVERT_INTERVAL_MS, VIEW_EXPIRY_MS, VIEW_SWEEP_INTERVAL_MS } from '../../src/grid/constants.js'
import { makeWorkload, PLACERS, simulate, type AgentSpec, type PlacerKind, type RunResult, type SimulateOptions, type Workload } from '../../src/sim/index.js'
import { Cluster } from '../../src/sim/cluster.js'
import { Scheduler } from '../../src/sim/scheduler.js'

const SEED = 3
const workload = makeWorkload({ agents: 100, jobs: 4000, load: 0.9, seed: SEED })
const runs = {} as Record<PlacerKind, RunResult>

/** Refused claims throw VgridErrors: their stack traces would be most of a run's time. */
function run (w: Workload, p: PlacerKind, opts: SimulateOptions = {}): RunResult {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return simulate(w, p, { seed: SEED, ...opts })
  } finally {
    Error.stackTraceLimit = limit
  }
}

beforeAll(() => {
  for (const p of PLACERS) runs[p] = run(workload, p)
})

function agent (id: number, cpus: number, volatile = false): AgentSpec {
  return { id, host: `h${id}`, cpus, gpus: [], volatile }
}

describe('simulator', () => {
  it.each(PLACERS)('%s: never overcommits a ledger, and runs every job to its end once', (p) => {
    const { summary, jobs } = runs[p]
    expect(summary.overcommits).toBe(0)
    expect(summary.ledgerChecks).toBeGreaterThan(2 * jobs.length)
    expect(summary.unfinished).toBe(0)
    for (const j of jobs) {
      expect(j.startedAt).toBeGreaterThanOrEqual(j.spec.submitAt)
      expect(j.endedAt - j.startedAt).toBeCloseTo(j.spec.durationMs, 6)
      expect(j.ranOn).toHaveLength(j.restarts + 1)
    }
    // The churn did cut some jobs short, and they were placed again.
    expect(summary.restarts).toBeGreaterThan(0)
    expect(summary.cpuUtil).toBeGreaterThan(0.75)
  })

  it('counts a ledger holding more than it lends', () => {
    const c = new Cluster(new Scheduler(), [agent(0, 4)], { gossip: false })
    c.join(0)
    expect(c.reserve(0, { cpus: 3, gpus: 0 })).toBeDefined()
    expect(c.reserve(0, { cpus: 2, gpus: 0 })).toBeUndefined() // the real ledger refuses
    expect(c.overcommits).toBe(0)
    c.executors[0].held.add({ id: 'forged', cpus: 2, memBytes: 0, gpus: [] })
    c.check(0)
    expect(c.overcommits).toBe(1)
  })

  it('places better than random at high load, and close to the omniscient placer', () => {
    const v = runs.vgrid.summary
    const r = runs.random.summary
    const o = runs.omniscient.summary
    expect(v.meanCompletionS).toBeLessThan(r.meanCompletionS)
    expect(v.meanWaitS).toBeLessThan(r.meanWaitS / 2)
    expect(v.claimsRefused / v.claimsSent).toBeLessThan(r.claimsRefused / r.claimsSent)
    expect(v.meanCompletionS).toBeLessThan(o.meanCompletionS * 1.15)
    expect(o.meanWaitS).toBeLessThan(v.meanWaitS)
  })

  it('gives the same figures for the same seed, other figures for another', () => {
    const again = run(workload, 'vgrid')
    expect(again.summary).toEqual(runs.vgrid.summary)
    expect(again.jobs.map((j) => j.startedAt)).toEqual(runs.vgrid.jobs.map((j) => j.startedAt))
    const other = run(workload, 'vgrid', { seed: SEED + 1 })
    expect(other.jobs.map((j) => j.startedAt)).not.toEqual(runs.vgrid.jobs.map((j) => j.startedAt))
  })

  it('does not claim again on a member that refused until it advertises anew', () => {
    const naive = run(workload, 'vgrid', { vgrid: { skipRefusers: false } }).summary
    expect(naive.overcommits).toBe(0)
    expect(runs.vgrid.summary.claimsRefused).toBeLessThan(naive.claimsRefused / 2)
  })

  it.each(PLACERS)('%s: a job whose executor leaves is placed again, from its submitter, when the loss is noticed', (p) => {
    // Agent 0 submits (and is too small to run the job), agent 1 runs it and leaves at 20 s,
    // agent 2 has joined meanwhile.
    const w: Workload = {
      agents: [agent(0, 1), agent(1, 8, true), agent(2, 8, true)],
      jobs: [{ id: 0, submitAt: 1000, submitter: 0, req: { cpus: 4, gpus: 0 }, durationMs: 60_000 }],
      churn: [{ t: 10_000, agent: 2, kind: 'join' }, { t: 20_000, agent: 1, kind: 'leave' }],
      initiallyUp: [true, true, false],
      load: 0.5,
      windowMs: 1000,
      capacity: { cpus: 17, gpus: 0 },
      gpuLoad: 0
    }
    const { summary, jobs: [job] } = run(w, p)
    expect(job.ranOn).toEqual([1, 2])
    expect(job.restarts).toBe(1)
    expect(summary.restarts).toBe(1)
    expect(summary.unfinished).toBe(0)
    expect(job.endedAt - job.startedAt).toBe(60_000)
    if (p === 'omniscient') {
      expect(job.startedAt).toBe(20_000)
    } else {
      // The submitter's view drops agent 1 VIEW_EXPIRY_MS after it last heard from it.
      expect(job.startedAt).toBeGreaterThanOrEqual(20_000 + VIEW_EXPIRY_MS - ADVERT_INTERVAL_MS)
      expect(job.startedAt).toBeLessThan(20_000 + VIEW_EXPIRY_MS + VIEW_SWEEP_INTERVAL_MS + 50)
    }
  })
})
