/**
 * vgrid's placement without a centre (DESIGN §2), as each submitting agent runs it, on top of
 * the real pure code (fitsNow, chooseClaimTargets, CLAIM_FANOUT) and the real ledgers.
 *
 * A placement round: the submitter takes its own gossip view, keeps the members that fitsNow,
 * draws CLAIM_FANOUT of them weighted by free capacity, and claims on each; the first grant
 * wins and the others are released. When every claim is refused the round starts again at once
 * with the view as it is then (the real agent retries at the next view change, which on a busy
 * grid is within a millisecond). When no member fits, the job waits at its submitter.
 *
 * `skipRefusers` (on by default): a member that refused a shape is not claimed for that shape
 * again until a newer advertisement of it reaches the submitter. A refusal proves the view of
 * that member stale; without this rule a submitter claims the same full members over and over
 * until gossip catches up (many times more refusals, see the simulator's report).
 *
 * Queue rule: each submitter keeps its jobs in submission order per request shape, with at
 * most PLACING_PER_SHAPE of a shape being placed at once (the agent's own limit). A shape whose
 * round finds nothing fitting is blocked: its later jobs wait behind it, other shapes go on
 * (a job that cannot fit says nothing about a smaller one). A blocked shape wakes when an
 * advertisement that fits it reaches the submitter, which is the real agent's "retry on view
 * change" without the view changes that cannot help. No job waits behind another shape, and
 * within a shape they go in order.
 */
import { CLAIM_FANOUT, chooseClaimTargets, fitsNow } from '../../grid/placement.js'
import type { ResourceRequest } from '../../common/resources.js'
import type { Claims } from '../claims.js'
import type { Grant, SimAd } from '../cluster.js'
import type { Gossip } from '../gossip.js'
import type { Rng } from '../random.js'
import type { Job, Placer, World } from '../world.js'
import { insertInOrder, shapeKey } from './order.js'

/** The agent's limit on jobs of one shape being placed at once (src/agent/tasks/manager.ts). */
export const PLACING_PER_SHAPE = 8
/** Newer advertisements of one member looked at for a wake-up when a shape blocks. */
const WAKE_LOOKAHEAD_ADS = 8

export interface VgridPlacerInit {
  /** Do not claim again, for a shape, on a member that refused it, until it advertises anew. */
  skipRefusers: boolean
}

interface Shape {
  id: number
  req: ResourceRequest
  /**
   * fitsNow(ad, req) by advertisement id: 0 not asked yet, 1 no, 2 yes. Advertisements never
   * change and a thousand submitters ask about the same ones.
   */
  memo: Int8Array
  /** Its queues that are blocked, so a new advertisement is tested once per shape. */
  blocked: Set<ShapeQueue>
}

interface ShapeQueue {
  submitter: number
  shape: Shape
  waiting: Job[]
  placing: number
  blocked: boolean
  /** Member → which of its advertisements the submitter saw when it refused this shape. */
  refusedAt: Map<number, number>
  wakeAt: number
  wakeToken: number
}

export class VgridPlacer implements Placer {
  rounds = 0
  private readonly queues = new Map<string, ShapeQueue>()
  private readonly shapes = new Map<string, Shape>()

  constructor (private readonly world: World, private readonly gossip: Gossip, private readonly claims: Claims,
    private readonly rng: Rng, private readonly init: VgridPlacerInit) {}

  submit (job: Job): void {
    const q = this.queue(job)
    insertInOrder(q.waiting, job)
    this.pump(q)
  }

  /** The submitter learns it when its view drops the member, and places the job again. */
  lost (job: Job, grant: Grant): void {
    const at = this.gossip.goneAt(job.spec.submitter, grant.agent, grant.run)
    this.world.sched.at(at, () => { this.submit(job) })
  }

  /** Cluster hook: advertisement `j` of `agent` was just published. */
  published (agent: number, j: number): void {
    const id = this.world.cluster.executors[agent].published[j]
    for (const s of this.shapes.values()) {
      if (s.blocked.size === 0 || !this.fits(s, id)) continue
      for (const q of s.blocked) this.wakeAt(q, this.gossip.firstDelivery(q.submitter, agent, j))
    }
  }

  private queue (job: Job): ShapeQueue {
    const k = shapeKey(job.spec.req)
    const key = `${job.spec.submitter}:${k}`
    let q = this.queues.get(key)
    if (q === undefined) {
      let shape = this.shapes.get(k)
      if (shape === undefined) {
        shape = { id: this.shapes.size, req: job.spec.req, memo: new Int8Array(1024), blocked: new Set() }
        this.shapes.set(k, shape)
      }
      q = { submitter: job.spec.submitter, shape, waiting: [], placing: 0, blocked: false, refusedAt: new Map(), wakeAt: Infinity, wakeToken: 0 }
      this.queues.set(key, q)
    }
    return q
  }

  private pump (q: ShapeQueue): void {
    while (!q.blocked && q.placing < PLACING_PER_SHAPE && q.waiting.length > 0) {
      const job = q.waiting.shift() as Job
      q.placing++
      this.round(q, job)
    }
  }

  private round (q: ShapeQueue, job: Job): void {
    this.rounds++
    this.gossip.view(q.submitter, this.world.sched.now)
    const { seenIndex, seenId } = this.gossip
    const ads = this.world.cluster.ads
    const skip = q.refusedAt.size > 0
    const fitting: SimAd[] = []
    for (let a = 0; a < seenId.length; a++) {
      const id = seenId[a]
      if (id < 0 || !this.fits(q.shape, id)) continue
      if (skip) {
        const refused = q.refusedAt.get(a)
        if (refused !== undefined) {
          if (seenIndex[a] <= refused) continue
          q.refusedAt.delete(a)
        }
      }
      fitting.push(ads[id])
    }
    if (fitting.length === 0) {
      q.placing--
      insertInOrder(q.waiting, job)
      this.block(q)
      return
    }
    const targets = chooseClaimTargets(fitting, CLAIM_FANOUT, this.rng, q.shape.req)
    let answers = 0
    let won = false
    for (const t of targets) {
      const seenThen = seenIndex[t.agent]
      this.claims.claim(t.agent, q.shape.req, (g) => {
        answers++
        if (g === undefined && this.init.skipRefusers) q.refusedAt.set(t.agent, Math.max(seenThen, q.refusedAt.get(t.agent) ?? -1))
        if (g !== undefined && !won) {
          won = true
          this.claims.start(job, g)
          q.placing--
          this.pump(q)
        } else if (g !== undefined) {
          this.claims.release(g)
        }
        if (answers === targets.length && !won) this.round(q, job)
      })
    }
  }

  /**
   * Nothing in the view fits: the shape waits for the first advertisement that shows room for
   * it, among those on their way (published, not yet seen: looked up here, from the view the
   * round just took) and those still to come (published()).
   */
  private block (q: ShapeQueue): void {
    if (q.blocked) return
    q.blocked = true
    q.shape.blocked.add(q)
    const ex = this.world.cluster.executors
    for (let a = 0; a < ex.length; a++) {
      if (!ex[a].up) continue
      const ids = ex[a].published
      const seen = this.gossip.seenIndex[a]
      for (let j = ids.length - 1; j > seen && j >= ids.length - WAKE_LOOKAHEAD_ADS; j--) {
        if (this.fits(q.shape, ids[j])) this.wakeAt(q, this.gossip.firstDelivery(q.submitter, a, j))
      }
    }
  }

  /** fitsNow, remembered per shape and advertisement. */
  private fits (s: Shape, id: number): boolean {
    if (id >= s.memo.length) {
      const m = new Int8Array(Math.max(2 * s.memo.length, id + 1))
      m.set(s.memo)
      s.memo = m
    }
    let f = s.memo[id]
    if (f === 0) {
      f = fitsNow(this.world.cluster.ads[id], s.req) ? 2 : 1
      s.memo[id] = f
    }
    return f === 2
  }

  private wakeAt (q: ShapeQueue, t: number): void {
    if (!q.blocked || t >= q.wakeAt) return
    q.wakeAt = t
    const token = ++q.wakeToken
    this.world.sched.at(t, () => {
      if (q.wakeToken !== token) return
      q.wakeAt = Infinity
      q.blocked = false
      q.shape.blocked.delete(q)
      this.pump(q)
    })
  }
}
