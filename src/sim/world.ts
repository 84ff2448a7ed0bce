/**
 * The jobs' side of a run: submissions and churn on the clock, jobs starting and ending on
 * their executors, and what a leaving agent takes with it. Where a job goes is the placer's
 * business (placers/); the world only reports to it.
 */
import type { Cluster, Grant } from './cluster.js'
import type { Scheduler } from './scheduler.js'
import type { JobSpec, Workload } from './workload.js'

export interface Job {
  readonly spec: JobSpec
  /** Start of the current (finally: the last) attempt; NaN before the first. */
  startedAt: number
  /** NaN until it completes. */
  endedAt: number
  /** Attempts cut short because their executor left. */
  restarts: number
  /** The agents its attempts ran on, in order. */
  ranOn: number[]
  grant: Grant | undefined
}

/** What a placer is told; everything else it learns through its own model. */
export interface Placer {
  /** The job arrives at its submitter now (first time only). */
  submit: (job: Job) => void
  /** The job's executor left while it ran there or before it started; it must be placed again. */
  lost: (job: Job, grant: Grant) => void
  /** Capacity was freed on `agent` (a job ended, or the agent joined). */
  freed?: (agent: number) => void
}

/** Cores and GPUs in use on one agent between two times. */
export interface Busy {
  cpus: number
  gpus: number
  start: number
  end: number
}

export class World {
  readonly jobs: Job[]
  readonly busy: Busy[] = []
  done = 0
  restarts = 0
  private placer: Placer | undefined
  private readonly running: Array<Set<Job>>

  constructor (readonly sched: Scheduler, readonly cluster: Cluster, readonly workload: Workload) {
    this.jobs = workload.jobs.map((spec) => ({ spec, startedAt: NaN, endedAt: NaN, restarts: 0, ranOn: [], grant: undefined }))
    this.running = workload.agents.map(() => new Set())
  }

  /** Puts the workload on the clock: agents up at 0 join first, then churn and submissions. */
  begin (placer: Placer): void {
    this.placer = placer
    this.workload.initiallyUp.forEach((up, agent) => { if (up) this.join(agent) })
    for (const c of this.workload.churn) this.sched.at(c.t, () => { c.kind === 'join' ? this.join(c.agent) : this.leave(c.agent) })
    for (const job of this.jobs) this.sched.at(job.spec.submitAt, () => { placer.submit(job) })
  }

  /** The job starts on its grant now, or is lost if that agent has gone meanwhile. */
  start (job: Job, grant: Grant): void {
    if (!this.cluster.alive(grant)) {
      this.placer?.lost(job, grant)
      return
    }
    job.grant = grant
    job.startedAt = this.sched.now
    job.ranOn.push(grant.agent)
    this.running[grant.agent].add(job)
    this.sched.after(job.spec.durationMs, () => { if (job.grant === grant) this.end(job, grant) })
  }

  private end (job: Job, grant: Grant): void {
    job.grant = undefined
    job.endedAt = this.sched.now
    this.done++
    this.running[grant.agent].delete(job)
    this.record(job, grant)
    this.cluster.release(grant)
    this.placer?.freed?.(grant.agent)
  }

  private join (agent: number): void {
    this.cluster.join(agent)
    this.placer?.freed?.(agent)
  }

  /** The agent vanishes; its jobs are lost (their submitters notice in their own time). */
  private leave (agent: number): void {
    const killed = [...this.running[agent]]
    this.running[agent].clear()
    this.cluster.leave(agent)
    for (const job of killed) {
      const grant = job.grant
      if (grant === undefined) continue
      job.grant = undefined
      job.restarts++
      this.restarts++
      this.record(job, grant)
      this.placer?.lost(job, grant)
    }
  }

  private record (job: Job, grant: Grant): void {
    this.busy.push({ cpus: grant.r.cpus, gpus: grant.r.gpus.length, start: job.startedAt, end: this.sched.now })
  }
}
