/**
 * The floor: each job is claimed on one member drawn at random from its submitter's view among
 * those that could ever fit it (fitsEver: load is ignored); on a refusal it tries another
 * random member RANDOM_RETRY_MS later. Same gossip, claims and ledgers as vgrid's placer.
 */
import { fitsEver } from '../../grid/placement.js'
import type { Claims } from '../claims.js'
import type { Grant, SimAd } from '../cluster.js'
import { RANDOM_RETRY_MS } from '../constants.js'
import type { Gossip } from '../gossip.js'
import type { Rng } from '../random.js'
import type { Job, Placer, World } from '../world.js'

/** Random draws of a member before falling back to listing the whole view. */
const DRAWS = 64

export class RandomPlacer implements Placer {
  rounds = 0

  constructor (private readonly world: World, private readonly gossip: Gossip, private readonly claims: Claims, private readonly rng: Rng) {}

  submit (job: Job): void {
    this.rounds++
    const target = this.draw(job)
    if (target === undefined) {
      this.world.sched.after(RANDOM_RETRY_MS, () => { this.submit(job) })
      return
    }
    this.claims.claim(target.agent, job.spec.req, (g) => {
      if (g !== undefined) this.claims.start(job, g)
      else this.world.sched.after(RANDOM_RETRY_MS, () => { this.submit(job) })
    })
  }

  lost (job: Job, grant: Grant): void {
    this.world.sched.at(this.gossip.goneAt(job.spec.submitter, grant.agent, grant.run), () => { this.submit(job) })
  }

  private draw (job: Job): SimAd | undefined {
    const now = this.world.sched.now
    const ex = this.world.cluster.executors
    const viewer = job.spec.submitter
    for (let i = 0; i < DRAWS; i++) {
      const a = Math.floor(this.rng() * ex.length)
      const j = this.gossip.seen(viewer, a, now)
      const ad = j < 0 ? undefined : this.world.cluster.ads[ex[a].published[j]]
      if (ad !== undefined && fitsEver(ad, job.spec.req)) return ad
    }
    const all = this.gossip.ads(viewer, now).filter((p) => fitsEver(p, job.spec.req))
    return all.length === 0 ? undefined : all[Math.floor(this.rng() * all.length)]
  }
}
