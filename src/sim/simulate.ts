/** One run: a workload, a placer, the simulated grid around them, and its figures. */
import { Claims, type NetInit } from './claims.js'
import { Cluster } from './cluster.js'
import {
  GOSSIP_LOSS, GOSSIP_MAX_DELAY_MS, GOSSIP_MIN_DELAY_MS, NET_MAX_DELAY_MS, NET_MIN_DELAY_MS, WARMUP_FRACTION
} from './constants.js'
import { Gossip, type GossipInit } from './gossip.js'
import { completionFigures, utilisation, type RunSummary } from './metrics.js'
import { OmniscientPlacer } from './placers/omniscient.js'
import { RandomPlacer } from './placers/random.js'
import { VgridPlacer, type VgridPlacerInit } from './placers/vgrid.js'
import { stream } from './random.js'
import { Scheduler } from './scheduler.js'
import type { Workload } from './workload.js'
import { World, type Job } from './world.js'

export const PLACERS = ['vgrid', 'omniscient', 'random'] as const
export type PlacerKind = typeof PLACERS[number]

export interface SimulateOptions {
  /** Seeds the gossip (loss, delays, expiry) and the placer's own draws; default 1. */
  seed?: number
  gossip?: Partial<Omit<GossipInit, 'seed'>>
  net?: Partial<NetInit>
  vgrid?: Partial<VgridPlacerInit>
}

export interface RunResult {
  summary: RunSummary
  /** Every job, with when it started and ended. */
  jobs: Job[]
}

export function simulate (workload: Workload, placer: PlacerKind, opts: SimulateOptions = {}): RunResult {
  const seed = opts.seed ?? 1
  const sched = new Scheduler()
  let onPublish: ((agent: number, j: number) => void) | undefined
  const cluster = new Cluster(sched, workload.agents, {
    gossip: placer !== 'omniscient',
    onPublish: (agent, j) => { onPublish?.(agent, j) }
  })
  const world = new World(sched, cluster, workload)
  const gossip = new Gossip(cluster, {
    seed,
    minDelayMs: opts.gossip?.minDelayMs ?? GOSSIP_MIN_DELAY_MS,
    maxDelayMs: opts.gossip?.maxDelayMs ?? GOSSIP_MAX_DELAY_MS,
    loss: opts.gossip?.loss ?? GOSSIP_LOSS
  })
  const claims = new Claims(world, stream(seed, 11), {
    minDelayMs: opts.net?.minDelayMs ?? NET_MIN_DELAY_MS,
    maxDelayMs: opts.net?.maxDelayMs ?? NET_MAX_DELAY_MS
  })
  const rng = stream(seed, 12)
  let rounds = (): number => 0
  if (placer === 'vgrid') {
    const p = new VgridPlacer(world, gossip, claims, rng, { skipRefusers: opts.vgrid?.skipRefusers ?? true })
    onPublish = (agent, j) => { p.published(agent, j) }
    rounds = () => p.rounds
    world.begin(p)
  } else if (placer === 'random') {
    const p = new RandomPlacer(world, gossip, claims, rng)
    rounds = () => p.rounds
    world.begin(p)
  } else {
    world.begin(new OmniscientPlacer(world))
  }
  sched.run()
  // Every change was checked as it happened; one last look at every ledger left up.
  cluster.executors.forEach((_, a) => { cluster.check(a) })

  const from = workload.windowMs * WARMUP_FRACTION
  const summary: RunSummary = {
    placer,
    load: workload.load,
    gpuLoad: workload.gpuLoad,
    agents: workload.agents.length,
    jobs: workload.jobs.length,
    ...completionFigures(world.jobs, from),
    ...utilisation(world.busy, cluster.executors, from, workload.windowMs),
    overcommits: cluster.overcommits,
    ledgerChecks: cluster.checks,
    rounds: rounds(),
    claimsSent: claims.sent,
    claimsRefused: claims.refused,
    claimsTimedOut: claims.timedOut,
    restarts: world.restarts,
    joins: workload.churn.filter((c) => c.kind === 'join').length,
    leaves: workload.churn.filter((c) => c.kind === 'leave').length,
    events: sched.events,
    simulatedS: sched.now / 1000
  }
  return { summary, jobs: world.jobs }
}
