/**
 * Where a command runs, decided from this agent's view of the grid. Pure functions: the
 * view only guides the choice, the executor's own ledger decides (it refuses a reservation
 * that does not fit, and the submitter then tries the next candidate).
 */
import { VgridError } from '../common/errors.js'
import type { PeerView } from './types.js'

export interface ResourceRequest {
  cpus: number
  gpus: number
  gpuModel?: string
}

function modelMatches (model: string, wanted: string | undefined): boolean {
  return wanted === undefined || model.toLowerCase().includes(wanted.toLowerCase())
}

function lentGpus (p: PeerView, req: ResourceRequest, onlyFree: boolean): number {
  const indexes = new Set(onlyFree ? p.load.gpusFree : p.offer.gpus)
  return p.resources.gpus.filter((g) => indexes.has(g.index) && modelMatches(g.model, req.gpuModel)).length
}

/** Could this member ever run the request, with everything it lends free? */
export function fitsEver (p: PeerView, req: ResourceRequest): boolean {
  return p.offer.cpus >= req.cpus && (req.gpus === 0 || lentGpus(p, req, false) >= req.gpus)
}

/** Does the member's last advertisement show room for the request now? */
export function fitsNow (p: PeerView, req: ResourceRequest): boolean {
  return p.load.cpusFree >= req.cpus && (req.gpus === 0 || lentGpus(p, req, true) >= req.gpus)
}

function describeRequest (req: ResourceRequest): string {
  const parts = [`${req.cpus} core${req.cpus === 1 ? '' : 's'}`]
  if (req.gpus > 0) parts.push(`${req.gpus} GPU${req.gpus === 1 ? '' : 's'}${req.gpuModel !== undefined ? ` matching "${req.gpuModel}"` : ''}`)
  return parts.join(' and ')
}

function largest (view: PeerView[]): PeerView | undefined {
  return [...view].sort((a, b) => (b.offer.gpus.length - a.offer.gpus.length) || (b.offer.cpus - a.offer.cpus))[0]
}

/**
 * Members to try, best first: those with room now, most free capacity first (the local agent
 * wins ties: no network hop). Throws ERR_IMPOSSIBLE_REQUEST when no member could ever fit,
 * naming the largest, and ERR_NO_CAPACITY when all that could are busy.
 */
export function candidates (view: PeerView[], req: ResourceRequest): PeerView[] {
  const possible = view.filter((p) => p.leaving !== true && fitsEver(p, req))
  if (possible.length === 0) {
    const big = largest(view)
    const what = big === undefined
      ? 'the grid has no members'
      : `the largest member, ${big.resources.host}, lends ${big.offer.cpus} cores and ${big.offer.gpus.length} GPUs`
    throw new VgridError('ERR_IMPOSSIBLE_REQUEST', `no member of the grid could ever run a command that needs ${describeRequest(req)}: ${what}`,
      'ask for less, or see what each member lends with `vgrid peers`')
  }
  const now = possible.filter((p) => fitsNow(p, req))
  if (now.length === 0) {
    throw new VgridError('ERR_NO_CAPACITY', `every member that could run a command needing ${describeRequest(req)} is busy`,
      'it starts when one has room (see `vgrid peers`)')
  }
  return now.sort((a, b) => (freeScore(b) - freeScore(a)) || (Number(b.self) - Number(a.self)))
}

/**
 * `--on PEER`: a full peer id, a unique prefix of one (at least 4 characters), or a hostname.
 */
export function resolvePeer (view: PeerView[], on: string): PeerView {
  const exact = view.find((p) => p.peer === on)
  if (exact !== undefined) return exact
  const byHost = view.filter((p) => p.resources.host.toLowerCase() === on.toLowerCase())
  if (byHost.length === 1) return byHost[0]
  if (byHost.length > 1) {
    throw new VgridError('ERR_AMBIGUOUS_PEER', `${byHost.length} members have the hostname ${on}: ${byHost.map((p) => p.peer).join(', ')}`,
      'name one by its peer id (or a unique prefix of it)')
  }
  const byPrefix = on.length >= 4 ? view.filter((p) => p.peer.startsWith(on)) : []
  if (byPrefix.length === 1) return byPrefix[0]
  if (byPrefix.length > 1) {
    throw new VgridError('ERR_AMBIGUOUS_PEER', `${byPrefix.length} members have peer ids starting with ${on}`, 'give more characters of the peer id')
  }
  throw new VgridError('ERR_NO_SUCH_PEER', `no member of the grid is called ${on}`, 'see the members with `vgrid peers`')
}

/** Members a submitter claims on at once: the first to accept runs the command. */
export const CLAIM_FANOUT = 2

/** How much room a member shows for placement weights: its free share of cores, plus free GPUs. */
export function freeScore (p: PeerView): number {
  return p.load.cpusFree / Math.max(1, p.offer.cpus) + p.load.gpusFree.length
}

/**
 * Up to `k` distinct members of `fitting` to claim on, drawn without replacement with
 * probability proportional to their free capacity (freeScore; a member that fits but shows
 * none still has a small chance). Spreading the draw is what keeps many submitters with the
 * same view from all claiming the emptiest member at once. `random` returns [0, 1).
 */
export function chooseClaimTargets<P extends PeerView> (fitting: P[], k: number, random: () => number = Math.random): P[] {
  const pool = fitting.map((p) => ({ p, w: Math.max(freeScore(p), 1e-3) }))
  const out: P[] = []
  while (out.length < k && pool.length > 0) {
    let total = 0
    for (const e of pool) total += e.w
    let x = random() * total
    let i = 0
    while (i < pool.length - 1 && x >= pool[i].w) { x -= pool[i].w; i++ }
    out.push(pool[i].p)
    pool.splice(i, 1)
  }
  return out
}
