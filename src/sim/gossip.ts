/**
 * What each agent knows of the others: its view, built lazily from the advertisements each
 * member published (cluster.ts) and the re-advertisements it sends every advertIntervalMs(n) in
 * between (as real agents do in a grid of n members). Whether a given advertisement reaches a given viewer, and when, is a hash of
 * (seed, viewer, sender, advertisement): lost with probability `loss`, else delayed between
 * `minDelayMs` and `maxDelayMs`. A viewer sees the newest advertisement that has reached it (an
 * older one arriving late is ignored, as the seq rule does); a member that left stays in its
 * view, stale, until the viewer's expiry sweep drops it (memberExpiryMs after it was last heard:
 * the simulator does not model the closed connection that tells a real agent at once).
 * An agent sees its own advertisements at once. Computing views on demand instead of
 * delivering a million messages a second keeps 1,000 agents cheap, and gives every placer of a
 * scenario exactly the same gossip.
 */
import { VIEW_SWEEP_INTERVAL_MS, advertIntervalMs, memberExpiryMs } from '../grid/constants.js'
import type { Cluster, SimAd } from './cluster.js'
import { VIEW_LOOKBACK_ADVERTS } from './constants.js'
import { hashUnit } from './random.js'

export interface GossipInit {
  seed: number
  minDelayMs: number
  maxDelayMs: number
  /** Probability that one advertisement does not reach one member. */
  loss: number
}

const SALT_LOSS = 0x1b56c4e9
const SALT_DELAY = 0x7feb352d
const SALT_PHASE = 0x2c1b3c6d
const SALT_GONE = 0x68e31da4

export class Gossip {
  /** After view(): per member, which of its advertisements the viewer sees (-1: not in the view)… */
  readonly seenIndex: Int32Array
  /** …and that advertisement's id in Cluster.ads (-1: none). */
  readonly seenId: Int32Array
  private readonly phases: Float64Array
  /** The refresh interval and the silence before expiry of every member, for this grid's size. */
  private readonly interval: number
  private readonly expiry: number
  /**
   * Per viewer, what its last view() found, and each member's version then when what was seen
   * was its newest advertisement of a live run (seen still until the version changes), else -1.
   */
  private readonly cache = new Map<number, { index: Int32Array, id: Int32Array, version: Int32Array }>()

  constructor (private readonly cluster: Cluster, private readonly init: GossipInit) {
    const n = cluster.executors.length
    this.seenIndex = new Int32Array(n).fill(-1)
    this.seenId = new Int32Array(n).fill(-1)
    this.interval = advertIntervalMs(n)
    this.expiry = memberExpiryMs(this.interval)
    this.phases = Float64Array.from({ length: n }, (_, a) => hashUnit(init.seed ^ SALT_PHASE, a, 0, 0) * this.interval)
  }

  /** Fills seenIndex and seenId with what `viewer` knows at `now`. */
  view (viewer: number, now: number): void {
    const ex = this.cluster.executors
    const versions = this.cluster.versions
    let c = this.cache.get(viewer)
    if (c === undefined) {
      c = { index: new Int32Array(ex.length).fill(-1), id: new Int32Array(ex.length).fill(-1), version: new Int32Array(ex.length).fill(-1) }
      this.cache.set(viewer, c)
    }
    for (let a = 0; a < ex.length; a++) {
      if (c.version[a] === versions[a]) continue
      const e = ex[a]
      const ids = e.published
      const j = this.seen(viewer, a, now)
      c.index[a] = j
      c.id[a] = j < 0 ? -1 : ids[j]
      c.version[a] = e.up && j >= 0 && j === ids.length - 1 ? versions[a] : -1
    }
    this.seenIndex.set(c.index)
    this.seenId.set(c.id)
  }

  /** The members `viewer` knows at `now`, each by the newest advertisement that reached it. */
  ads (viewer: number, now: number): SimAd[] {
    this.view(viewer, now)
    const out: SimAd[] = []
    for (const id of this.seenId) if (id >= 0) out.push(this.cluster.ads[id])
    return out
  }

  /** Which advertisement of `agent` (index among its own) `viewer` sees at `now`, or -1. */
  seen (viewer: number, agent: number, now: number): number {
    const e = this.cluster.executors[agent]
    const ids = e.published
    if (viewer === agent) return e.up ? ids.length - 1 : -1
    const { adAt, adRun } = this.cluster
    const ph = this.phases[agent]
    let budget = VIEW_LOOKBACK_ADVERTS
    for (let j = ids.length - 1; j >= 0; j--) {
      const t = adAt[ids[j]]
      const run = adRun[ids[j]]
      const end = e.runs[run].end
      if (end <= now && now >= this.goneAt(viewer, agent, run)) return -1
      // This content has reached the viewer if the advertisement did, or any of the periodic
      // re-advertisements sent before the next one (oldest first: the likeliest to have).
      if (this.delivered(viewer, agent, 2 * j, t, now)) return j
      let upper = Math.min(now, end)
      if (j + 1 < ids.length) upper = Math.min(upper, adAt[ids[j + 1]])
      for (let k = Math.floor((t - ph) / this.interval) + 1; ; k++) {
        const tau = ph + k * this.interval
        if (tau >= upper) break
        if (--budget < 0) return -1
        if (this.delivered(viewer, agent, 2 * k + 1, tau, now)) return j
      }
    }
    return -1
  }

  /**
   * When advertisement `j` of `agent` first reaches `viewer`: itself, or if it was lost a
   * later re-advertisement of the same content; Infinity if none does before newer content.
   */
  firstDelivery (viewer: number, agent: number, j: number): number {
    const e = this.cluster.executors[agent]
    const id = e.published[j]
    const t = this.cluster.adAt[id]
    if (viewer === agent) return t
    if (!this.lost(viewer, agent, 2 * j)) return t + this.delay(viewer, agent, 2 * j)
    let upper = e.runs[this.cluster.adRun[id]].end
    if (j + 1 < e.published.length) upper = Math.min(upper, this.cluster.adAt[e.published[j + 1]])
    const ph = this.phases[agent]
    let k = Math.floor((t - ph) / this.interval) + 1
    for (let n = 0; n < VIEW_LOOKBACK_ADVERTS; n++, k++) {
      const tau = ph + k * this.interval
      if (tau >= upper) break
      if (!this.lost(viewer, agent, 2 * k + 1)) return tau + this.delay(viewer, agent, 2 * k + 1)
    }
    return Infinity
  }

  /**
   * When `viewer` drops `run` of `agent` from its view (and so learns that what ran there is
   * lost): the expiry time after it last heard from it, at its next sweep.
   */
  goneAt (viewer: number, agent: number, run: number): number {
    const end = this.cluster.executors[agent].runs[run].end
    if (viewer === agent) return end
    const s = this.init.seed ^ SALT_GONE
    return end - hashUnit(s, viewer, agent, 2 * run) * this.interval + this.expiry +
      hashUnit(s, viewer, agent, 2 * run + 1) * VIEW_SWEEP_INTERVAL_MS
  }

  private lost (viewer: number, agent: number, key: number): boolean {
    return hashUnit(this.init.seed ^ SALT_LOSS, viewer, agent, key) < this.init.loss
  }

  private delay (viewer: number, agent: number, key: number): number {
    const u = hashUnit(this.init.seed ^ SALT_DELAY, viewer, agent, key)
    return this.init.minDelayMs + (this.init.maxDelayMs - this.init.minDelayMs) * u * u
  }

  private delivered (viewer: number, agent: number, key: number, sentAt: number, now: number): boolean {
    if (this.lost(viewer, agent, key)) return false
    return now - sentAt >= this.init.maxDelayMs || sentAt + this.delay(viewer, agent, key) <= now
  }
}
