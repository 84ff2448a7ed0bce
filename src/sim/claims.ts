/**
 * The claim protocol on a simulated LAN, for the placers that have a submitter (vgrid's and
 * random placement): a claim travels to the executor, which reserves atomically on its real
 * ledger or refuses, and the answer travels back; a member that has gone answers nothing, and
 * the claim counts as refused after CLAIM_TIMEOUT_MS. The submitter then starts the job on a
 * grant (one more message) or releases it.
 */
import type { ResourceRequest } from '../common/resources.js'
import type { Cluster, Grant } from './cluster.js'
import { CLAIM_TIMEOUT_MS } from './constants.js'
import type { Rng } from './random.js'
import type { Scheduler } from './scheduler.js'
import type { Job, World } from './world.js'

export interface NetInit {
  minDelayMs: number
  maxDelayMs: number
}

export class Claims {
  sent = 0
  refused = 0
  timedOut = 0
  private readonly sched: Scheduler
  private readonly cluster: Cluster

  constructor (private readonly world: World, private readonly rng: Rng, private readonly net: NetInit) {
    this.sched = world.sched
    this.cluster = world.cluster
  }

  /** Claims `req` on `agent`; `reply` gets the grant, or undefined for a refusal or no answer. */
  claim (agent: number, req: ResourceRequest, reply: (g: Grant | undefined) => void): void {
    this.sent++
    const there = this.delay()
    this.sched.after(there, () => {
      if (!this.cluster.executors[agent].up) {
        this.sched.after(CLAIM_TIMEOUT_MS - there, () => { this.timedOut++; reply(undefined) })
        return
      }
      const g = this.cluster.reserve(agent, req)
      if (g === undefined) this.refused++
      this.sched.after(this.delay(), () => { reply(g) })
    })
  }

  /** Tells the executor to run the job on its grant. */
  start (job: Job, g: Grant): void {
    this.sched.after(this.delay(), () => { this.world.start(job, g) })
  }

  release (g: Grant): void {
    this.sched.after(this.delay(), () => { this.cluster.release(g) })
  }

  private delay (): number {
    return this.net.minDelayMs + (this.net.maxDelayMs - this.net.minDelayMs) * this.rng()
  }
}
