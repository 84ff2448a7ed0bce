/**
 * The yardstick: a central placer that knows every agent's true state at every instant and
 * acts with no delay. One global queue in submission order with greedy backfill: a job starts
 * as soon as some agent fits it, the earliest queued job first, on the agent it fits most
 * tightly (fewest GPUs left idle, then fewest cores). It uses the same fit test (fitsNow) and
 * the same ledgers as the others, so it is bound by the same rules, only not by the network.
 */
import { fitsNow } from '../../grid/placement.js'
import type { ResourceRequest } from '../../common/resources.js'
import type { Cluster, SimAd } from '../cluster.js'
import type { Job, Placer, World } from '../world.js'
import { insertInOrder, shapeKey } from './order.js'

export class OmniscientPlacer implements Placer {
  /** Waiting jobs by shape, each in submission order: only a head can be the next to fit. */
  private readonly queues = new Map<string, Job[]>()
  private readonly cluster: Cluster

  constructor (private readonly world: World) {
    this.cluster = world.cluster
  }

  submit (job: Job): void {
    const key = shapeKey(job.spec.req)
    let q = this.queues.get(key)
    if (q === undefined) { q = []; this.queues.set(key, q) }
    insertInOrder(q, job)
    // Nothing queued fits anywhere (the invariant after every event): only a new head may.
    if (q[0] !== job) return
    const agent = this.bestFit(job.spec.req)
    if (agent !== undefined) this.place(q, agent)
  }

  lost (job: Job): void {
    this.submit(job)
  }

  /** Only this agent changed: give it the earliest queued jobs that fit it. */
  freed (agent: number): void {
    for (;;) {
      let best: Job[] | undefined
      for (const q of this.queues.values()) {
        if (q.length === 0 || (best !== undefined && best[0].spec.id < q[0].spec.id)) continue
        const ad = this.cluster.executors[agent].current
        if (ad !== undefined && fitsNow(ad, q[0].spec.req)) best = q
      }
      if (best === undefined) return
      this.place(best, agent)
    }
  }

  private place (q: Job[], agent: number): void {
    const job = q.shift()
    if (job === undefined) return
    const grant = this.cluster.reserve(agent, job.spec.req)
    if (grant === undefined) throw new Error(`omniscient placer: agent ${agent} refused a job it fits`)
    this.world.start(job, grant)
  }

  private bestFit (req: ResourceRequest): number | undefined {
    let best: SimAd | undefined
    for (const e of this.cluster.executors) {
      const ad = e.current
      // The cheap comparison first: fitsNow only for a member that would be the best so far.
      if (ad === undefined || (best !== undefined && !tighter(ad, best)) || !roomFor(ad, req) || !fitsNow(ad, req)) continue
      best = ad
      if (ad.load.cpusFree === req.cpus && ad.load.gpusFree.length === req.gpus) break // exact fit
    }
    return best?.agent
  }
}

/** Cheaper than fitsNow and implied by it: most members fail here. */
function roomFor (a: SimAd, req: ResourceRequest): boolean {
  return a.load.cpusFree >= req.cpus && a.load.gpusFree.length >= req.gpus
}

function tighter (a: SimAd, b: SimAd): boolean {
  const ga = a.load.gpusFree.length
  const gb = b.load.gpusFree.length
  return ga !== gb ? ga < gb : a.load.cpusFree < b.load.cpusFree
}
