/**
 * What this machine lends to the grid and what running commands hold of it. A claim from a
 * submitter is decided here, synchronously, so two submitters can never overcommit the
 * machine whatever their views said (DESIGN §2). GPUs are handed out whole and exclusively,
 * lowest free index first; cores and memory are counted, not pinned.
 */
import { VgridError } from '../common/errors.js'
import type { LentGpu } from './types.js'

export interface LedgerOffer<G extends LentGpu = LentGpu> {
  cpus: number
  memBytes: number
  /** The GPUs lent (not necessarily all the machine has). */
  gpus: G[]
}

export interface ReserveRequest {
  /** Cores; 0 is allowed and counts against nothing. */
  cpus: number
  memBytes?: number
  /** Whole GPUs. */
  gpus: number
  /** Case-insensitive substring of the GPU model (`a100`). */
  gpuModel?: string
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
  return { cpus: offer.cpus, memBytes: offer.memBytes, gpus: [...offer.gpus].sort((a, b) => a.index - b.index) }
}

export class Ledger<G extends LentGpu = LentGpu> {
  private offer: LedgerOffer<G>
  private readonly held = new Map<string, Reservation<G>>()
  private nextId = 1

  constructor (offer: LedgerOffer<G>) {
    this.offer = checkOffer(offer)
  }

  /** Takes the resources at once, or throws ERR_NO_CAPACITY saying what is short. */
  reserve (req: ReserveRequest): Reservation<G> {
    const cpus = checkCount(req.cpus, 'cpus', false)
    const memBytes = checkCount(req.memBytes ?? 0, 'memBytes', false)
    const gpus = checkCount(req.gpus, 'gpus', true)
    const s = this.snapshot()
    const free = this.freeGpus().filter(this.modelFilter(req.gpuModel))
    const short: string[] = []
    if (cpus > s.cpusFree) short.push(`needs ${plural(cpus, 'core')}, ${s.cpusFree} free of ${this.offer.cpus} lent`)
    if (memBytes > s.memFree) short.push(`needs ${bytesText(memBytes)} of memory, ${bytesText(s.memFree)} free of ${bytesText(this.offer.memBytes)} lent`)
    if (gpus > free.length) {
      const lent = this.offer.gpus.filter(this.modelFilter(req.gpuModel)).length
      short.push(`needs ${plural(gpus, 'GPU')}${req.gpuModel !== undefined ? ` matching "${req.gpuModel}"` : ''}, ${free.length} free of ${lent} lent`)
    }
    if (short.length > 0) throw new VgridError('ERR_NO_CAPACITY', `not enough free here: ${short.join('; ')}`)
    const r: Reservation<G> = { id: `r${this.nextId++}`, cpus, memBytes, gpus: free.slice(0, gpus) }
    this.held.set(r.id, r)
    return r
  }

  /** Gives a reservation back; releasing it again (or an unknown one) does nothing. */
  release (r: Reservation<G> | string): boolean {
    return this.held.delete(typeof r === 'string' ? r : r.id)
  }

  /** Whether this machine could satisfy the request when nothing else runs. */
  fitsEver (req: ReserveRequest): boolean {
    return req.cpus <= this.offer.cpus &&
      (req.memBytes ?? 0) <= this.offer.memBytes &&
      req.gpus <= this.offer.gpus.filter(this.modelFilter(req.gpuModel)).length
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

  /** The owner changed what is lent. Running reservations keep what they hold. */
  update (offer: LedgerOffer<G>): void {
    this.offer = checkOffer(offer)
  }

  private freeGpus (): G[] {
    const taken = new Set<number>()
    for (const r of this.held.values()) for (const g of r.gpus) taken.add(g.index)
    return this.offer.gpus.filter((g) => !taken.has(g.index))
  }

  private modelFilter (model: string | undefined): (g: G) => boolean {
    if (model === undefined || model === '') return () => true
    const m = model.toLowerCase()
    return (g) => g.model.toLowerCase().includes(m)
  }
}
