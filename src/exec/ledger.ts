/**
 * What this machine lends to the grid and what running commands hold of it. A claim from a
 * submitter is decided here, synchronously, so two submitters can never overcommit the
 * machine whatever their views said (DESIGN §2). GPUs are handed out whole and exclusively,
 * lowest free index first; cores and memory are counted, not pinned.
 */
import { VgridError } from '../common/errors.js'
import type { LentGpu } from './types.js'
import { gpuMatches, policyMismatch, type ResourceRequest } from '../common/resources.js'

export interface LedgerOffer<G extends LentGpu = LentGpu> {
  cpus: number
  memBytes: number
  /** The GPUs lent (not necessarily all the machine has). */
  gpus: G[]
  /** Pools this machine lends to (`--pool`); a request naming another is refused. */
  pools?: string[]
  /** Its `--label`s; a request is refused unless it has every label the request names. */
  labels?: Record<string, string>
  /** Reservations held at once at most (`--max-tasks`); undefined = no limit. */
  maxTasks?: number
  /** Set while the machine takes no work at all (its owner is busy, paused it, or drains it): why. */
  closed?: string
}

export interface Reservation<G extends LentGpu = LentGpu> {
  readonly id: string
  readonly cpus: number
  readonly memBytes: number
  readonly gpus: G[]
}

export interface LedgerSnapshot {
  cpusFree: number
  memFree: number
  /** Indexes of lent GPUs that no reservation holds, ascending. */
  gpusFree: number[]
  /** Reservations held. */
  running: number
}

const GIB = 1024 ** 3

function bytesText (n: number): string {
  return n >= GIB ? `${(n / GIB).toFixed(1)} GiB` : `${Math.round(n / 1024 ** 2)} MiB`
}

function plural (n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`
}

function checkCount (v: unknown, what: string, integer: boolean): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v))) {
    throw new VgridError('ERR_BAD_ARGUMENT', `${what} must be a ${integer ? 'whole ' : ''}number ≥ 0, not ${String(v)}`)
  }
  return v
}

function checkOffer<G extends LentGpu> (offer: LedgerOffer<G>): LedgerOffer<G> {
  checkCount(offer.cpus, 'the cores lent', false)
  checkCount(offer.memBytes, 'the memory lent', false)
  const seen = new Set<number>()
  for (const g of offer.gpus) {
    if (seen.has(g.index)) throw new VgridError('ERR_BAD_ARGUMENT', `GPU ${g.index} is lent twice`)
    seen.add(g.index)
  }
  return {
    cpus: offer.cpus,
    memBytes: offer.memBytes,
    gpus: [...offer.gpus].sort((a, b) => a.index - b.index),
    pools: [...offer.pools ?? []],
    labels: { ...offer.labels },
    ...(offer.maxTasks !== undefined ? { maxTasks: checkCount(offer.maxTasks, 'the most tasks at once', true) } : {}),
    ...(offer.closed !== undefined ? { closed: offer.closed } : {})
  }
}

export class Ledger<G extends LentGpu = LentGpu> {
  private offer: LedgerOffer<G>
  private readonly held = new Map<string, Reservation<G>>()
  private readonly released = new Set<() => void>()
  private nextId = 1

  constructor (offer: LedgerOffer<G>) {
    this.offer = checkOffer(offer)
  }

  /**
   * Takes the resources at once, or throws ERR_NO_CAPACITY saying what is short. A request
   * for a pool or labels this machine does not have is refused the same way: the submitter's
   * view was stale (or lied), and it should try another member.
   */
  reserve (req: ResourceRequest): Reservation<G> {
    const cpus = checkCount(req.cpus, 'cpus', false)
    const memBytes = checkCount(req.memBytes ?? 0, 'memBytes', false)
    const gpus = checkCount(req.gpus, 'gpus', true)
    checkCount(req.gpuMemBytes ?? 0, 'gpuMemBytes', false)
    const mismatch = this.policyMismatch(req)
    if (mismatch !== undefined) throw new VgridError('ERR_NO_CAPACITY', `not for this member: ${mismatch}`)
    const refusal = this.refusal()
    if (refusal !== undefined) throw new VgridError('ERR_NO_CAPACITY', `not taking work now: ${refusal}`)
    const s = this.snapshot()
    const free = this.freeGpus().filter(this.gpuFilter(req))
    const short: string[] = []
    if (cpus > s.cpusFree) short.push(`needs ${plural(cpus, 'core')}, ${s.cpusFree} free of ${this.offer.cpus} lent`)
    if (memBytes > s.memFree) short.push(`needs ${bytesText(memBytes)} of memory, ${bytesText(s.memFree)} free of ${bytesText(this.offer.memBytes)} lent`)
    if (gpus > free.length) {
      const lent = this.offer.gpus.filter(this.gpuFilter(req)).length
      const which = [
        req.gpuModel !== undefined ? ` matching "${req.gpuModel}"` : '',
        (req.gpuMemBytes ?? 0) > 0 ? ` with at least ${bytesText(req.gpuMemBytes!)}` : ''
      ].join('')
      short.push(`needs ${plural(gpus, 'GPU')}${which}, ${free.length} free of ${lent} lent`)
    }
    if (short.length > 0) throw new VgridError('ERR_NO_CAPACITY', `not enough free here: ${short.join('; ')}`)
    const r: Reservation<G> = { id: `r${this.nextId++}`, cpus, memBytes, gpus: free.slice(0, gpus) }
    this.held.set(r.id, r)
    return r
  }

  /** Gives a reservation back; releasing it again (or an unknown one) does nothing. */
  release (r: Reservation<G> | string): boolean {
    const had = this.held.delete(typeof r === 'string' ? r : r.id)
    if (had) for (const fn of [...this.released]) fn()
    return had
  }

  /**
   * Calls `fn` each time a reservation is given back; returns the unsubscribe. Runs waiting
   * for room here start at once, not at the next advertisement (which the grid spaces out).
   */
  onRelease (fn: () => void): () => void {
    this.released.add(fn)
    return () => { this.released.delete(fn) }
  }

  /** Whether this machine could satisfy the request when nothing else runs. */
  fitsEver (req: ResourceRequest): boolean {
    return this.policyMismatch(req) === undefined &&
      req.cpus <= this.offer.cpus &&
      (req.memBytes ?? 0) <= this.offer.memBytes &&
      req.gpus <= this.offer.gpus.filter(this.gpuFilter(req)).length
  }

  snapshot (): LedgerSnapshot {
    let cpus = 0
    let mem = 0
    for (const r of this.held.values()) { cpus += r.cpus; mem += r.memBytes }
    return {
      // After update() lowered the offer, what runs may hold more than is lent: nothing is free.
      cpusFree: Math.max(0, this.offer.cpus - cpus),
      memFree: Math.max(0, this.offer.memBytes - mem),
      gpusFree: this.freeGpus().map((g) => g.index),
      running: this.held.size
    }
  }

  /** Why no reservation, however small, would be granted now; undefined when one could be. */
  refusal (): string | undefined {
    if (this.offer.closed !== undefined) return this.offer.closed
    const max = this.offer.maxTasks
    if (max === 0) return 'its owner lets it run no command (--max-tasks 0)'
    if (max !== undefined && this.held.size >= max) return `it runs ${plural(this.held.size, 'command')}, the most its owner allows at once (--max-tasks ${max})`
    return undefined
  }

  /** The owner changed what is lent. Running reservations keep what they hold. */
  update (offer: LedgerOffer<G>): void {
    this.offer = checkOffer(offer)
  }

  private freeGpus (): G[] {
    const taken = new Set<number>()
    for (const r of this.held.values()) for (const g of r.gpus) taken.add(g.index)
    return this.offer.gpus.filter((g) => !taken.has(g.index))
  }

  private gpuFilter (req: ResourceRequest): (g: G) => boolean {
    return (g) => gpuMatches(g, req)
  }

  /** Why this machine is not one the request may run on (pool, labels), or undefined. */
  private policyMismatch (req: ResourceRequest): string | undefined {
    return policyMismatch(this.offer, req)
  }
}
