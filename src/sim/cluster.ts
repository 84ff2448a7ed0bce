/**
 * The simulated machines. Each agent that is up holds a real exec `Ledger`: every claim is a
 * `reserve` against its true state, which refuses what does not fit (ERR_NO_CAPACITY). After
 * every change the ledger is checked against what it lends (an overcommit is counted, never
 * expected), the agent's true advertisement is rebuilt, and it is published LOAD_SETTLE_MS
 * later, at most once per MIN_PUBLISH_GAP_MS, as the real agent coalesces. Periodic
 * re-advertisements are not events: gossip.ts derives them from the published history.
 */
import { VgridError } from '../common/errors.js'
import { Ledger, type Reservation } from '../exec/ledger.js'
import type { ResourceRequest } from '../common/resources.js'
import { LOAD_SETTLE_MS, MIN_PUBLISH_GAP_MS } from '../grid/constants.js'
import type { GpuInfo, PeerView } from '../grid/types.js'
import type { Scheduler } from './scheduler.js'
import type { AgentSpec } from './workload.js'

/** An advertisement as the simulator keeps it: the real shape, plus which agent sent it. */
export interface SimAd extends PeerView {
  agent: number
  /** Its index in Cluster.ads. */
  id: number
}

/** One run of an agent, from joining to leaving (Infinity while up). */
export interface RunSpan {
  start: number
  end: number
}

/** A reservation on one run of one agent. */
export interface Grant {
  agent: number
  run: number
  r: Reservation<GpuInfo>
}

export class Executor {
  ledger: Ledger<GpuInfo> | undefined
  readonly held = new Set<Reservation<GpuInfo>>()
  readonly runs: RunSpan[] = []
  /** Ids (in Cluster.ads) of the advertisements it published, oldest first. */
  readonly published: number[] = []
  current: SimAd | undefined
  lastPublishAt = -Infinity
  publishPending = false
  readonly offer: PeerView['offer']
  readonly resources: PeerView['resources']

  constructor (readonly spec: AgentSpec) {
    this.offer = { cpus: spec.cpus, memBytes: 64 * 1024 ** 3, gpus: spec.gpus.map((g) => g.index), pools: [], labels: {} }
    this.resources = {
      host: spec.host,
      os: { platform: 'linux', distro: 'sim', release: '0', arch: 'x64' },
      cpu: { model: 'sim', cores: spec.cpus },
      memBytes: 64 * 1024 ** 3,
      gpus: spec.gpus
    }
  }

  get up (): boolean {
    return this.ledger !== undefined
  }

  get run (): number {
    return this.runs.length - 1
  }
}

export interface ClusterInit {
  /** Publish advertisements (the omniscient placer needs none). */
  gossip: boolean
  /** Called after every publication, with the index of the new one among the agent's. */
  onPublish?: (agent: number, j: number) => void
}

export class Cluster {
  readonly executors: Executor[]
  /** Ledger states found holding more than they lend (must stay 0). */
  overcommits = 0
  /** Ledger checks made. */
  checks = 0
  /** Per agent, bumped when it publishes, joins or leaves: views of it can be reused until then. */
  readonly versions: Int32Array
  /**
   * Every advertisement published, by id, with when and by which run of its agent. Flat
   * arrays: views read them a million times a run.
   */
  readonly ads: SimAd[] = []
  readonly adAt: number[] = []
  readonly adRun: number[] = []

  constructor (private readonly sched: Scheduler, agents: AgentSpec[], private readonly init: ClusterInit) {
    this.executors = agents.map((a) => new Executor(a))
    this.versions = new Int32Array(agents.length)
  }

  join (agent: number): void {
    const e = this.executors[agent]
    if (e.up) return
    e.ledger = new Ledger<GpuInfo>({ cpus: e.offer.cpus, memBytes: e.offer.memBytes, gpus: e.spec.gpus })
    e.runs.push({ start: this.sched.now, end: Infinity })
    this.versions[agent]++
    e.lastPublishAt = -Infinity
    this.changed(agent)
  }

  /** The agent vanishes (no goodbye): what it held is gone with it. */
  leave (agent: number): void {
    const e = this.executors[agent]
    if (!e.up) return
    e.runs[e.run].end = this.sched.now
    this.versions[agent]++
    e.ledger = undefined
    e.held.clear()
    e.current = undefined
  }

  /** The claim, decided by the real ledger: a grant, or undefined for a refusal. */
  reserve (agent: number, req: ResourceRequest): Grant | undefined {
    const e = this.executors[agent]
    if (e.ledger === undefined) return undefined
    let r: Reservation<GpuInfo>
    try {
      r = e.ledger.reserve(req)
    } catch (err) {
      if (err instanceof VgridError && err.code === 'ERR_NO_CAPACITY') return undefined
      throw err
    }
    e.held.add(r)
    this.changed(agent)
    return { agent, run: e.run, r }
  }

  /** Whether the grant's run of its agent is still up. */
  alive (g: Grant): boolean {
    const e = this.executors[g.agent]
    return e.up && e.run === g.run
  }

  release (g: Grant): void {
    const e = this.executors[g.agent]
    if (!this.alive(g) || e.ledger === undefined) return
    e.ledger.release(g.r)
    e.held.delete(g.r)
    this.changed(g.agent)
  }

  /**
   * Checks one ledger against what it lends, from the reservations it granted: cores summed,
   * GPUs distinct and lent. Changes only happen through reserve/release, so checking the
   * touched ledger after each is checking every ledger after every event.
   */
  check (agent: number): void {
    const e = this.executors[agent]
    if (e.ledger === undefined) return
    this.checks++
    let cpus = 0
    const gpus = new Set<number>()
    let gpuCount = 0
    for (const r of e.held) {
      cpus += r.cpus
      for (const g of r.gpus) { gpus.add(g.index); gpuCount++ }
    }
    const lent = new Set(e.offer.gpus)
    const snap = e.ledger.snapshot()
    const bad = cpus > e.offer.cpus + 1e-9 || gpus.size !== gpuCount || [...gpus].some((g) => !lent.has(g)) ||
      snap.running !== e.held.size || Math.abs(snap.cpusFree - (e.offer.cpus - cpus)) > 1e-9
    if (bad) this.overcommits++
  }

  private changed (agent: number): void {
    this.check(agent)
    const e = this.executors[agent]
    if (e.ledger === undefined) return
    const s = e.ledger.snapshot()
    e.current = {
      agent,
      v: 1,
      peer: e.spec.host,
      seq: e.published.length,
      startedAt: e.runs[e.run].start,
      addrs: [],
      version: 'sim',
      resources: e.resources,
      offer: e.offer,
      load: { cpusFree: s.cpusFree, memFree: s.memFree, gpusFree: s.gpusFree, running: s.running, queued: 0, cpuUtil: 0 },
      lastSeenMs: 0,
      self: false,
      id: -1
    }
    if (this.init.gossip) this.schedulePublish(agent)
  }

  private schedulePublish (agent: number): void {
    const e = this.executors[agent]
    if (e.publishPending) return
    const at = Math.max(this.sched.now + LOAD_SETTLE_MS, e.lastPublishAt + MIN_PUBLISH_GAP_MS)
    e.publishPending = true
    this.sched.at(at, () => {
      e.publishPending = false
      if (e.up) this.publish(agent)
    })
  }

  private publish (agent: number): void {
    const e = this.executors[agent]
    // One advertisement object per publication (the next change makes a new `current`).
    const ad = e.current
    if (ad === undefined || ad.id >= 0) return
    ad.id = this.ads.length
    this.ads.push(ad)
    this.adAt.push(this.sched.now)
    this.adRun.push(e.run)
    e.lastPublishAt = this.sched.now
    e.published.push(ad.id)
    this.versions[agent]++
    this.init.onPublish?.(agent, e.published.length - 1)
  }
}
