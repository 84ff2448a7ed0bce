/**
 * Where a command runs, decided from this agent's view of the grid. Pure functions: the
 * view only guides the choice, the executor's own ledger decides (it refuses a reservation
 * that does not fit, and the submitter then tries the next candidate).
 */
import { VgridError } from '../common/errors.js'
import { formatBytes } from '../common/units.js'
import { matchesPeerPart, shortPeerId } from '../common/peer-id.js'
import type { DepartedMember, PeerView } from './types.js'
import { gpuMatches, matches, type ResourceRequest } from '../common/resources.js'


function lentGpus (p: PeerView, req: ResourceRequest, onlyFree: boolean): number {
  const indexes = new Set(onlyFree ? p.load.gpusFree : p.offer.gpus)
  return p.resources.gpus.filter((g) => indexes.has(g.index) && gpuMatches(g, req)).length
}

/** Whether the member is in the request's pool and has all its labels: what no free room changes. */
export function matchesPolicy (p: PeerView, req: ResourceRequest): boolean {
  return matches(p.offer, req)
}

/**
 * Does the member run commands sent by `peer` (its owner's `--accept-from`)? Its own are
 * always its own. Its advertisement only guides: the member checks every exec request.
 */
export function acceptsFrom (p: PeerView, peer: string): boolean {
  return p.self || p.offer.acceptFrom === undefined || p.offer.acceptFrom.includes(peer)
}

/**
 * Could the member take in a synced workspace of `bytes` (its advertised storeRoom)? Its
 * own runs need no copy (they run in the workspace), no workspace (`--no-sync`, undefined)
 * needs no room, and a member that does not say is assumed to have it: its own check,
 * before it writes anything, refuses it then.
 */
export function hasRoomFor (p: PeerView, bytes: number | undefined): boolean {
  return bytes === undefined || bytes === 0 || p.self || p.load.storeRoom === undefined || p.load.storeRoom >= bytes
}

/** The members that could run it but have no room for its workspace, named, with the room each has. */
export function noRoom (members: PeerView[], bytes: number): VgridError {
  const named = members.slice(0, 3).map((p) => `${p.resources.host} (${shortPeerId(p.peer)}) has ${formatBytes(p.load.storeRoom ?? 0)}`)
  const more = members.length > named.length ? ` and ${members.length - named.length} more` : ''
  const who = members.length === 1 ? 'the only member that could run it' : `none of the ${members.length} members that could run it`
  return new VgridError('ERR_NO_SPACE', `${who} has room for this workspace (needs ${formatBytes(bytes)}): ${named.join(', ')}${more}`,
    'free disk space on one of them, leave large files out with .vgridignore, or run with --no-sync')
}

/** Could this member ever run the request, with everything it lends free? */
export function fitsEver (p: PeerView, req: ResourceRequest): boolean {
  return matchesPolicy(p, req) && p.offer.cpus >= req.cpus && p.offer.memBytes >= (req.memBytes ?? 0) &&
    (req.gpus === 0 || lentGpus(p, req, false) >= req.gpus)
}

/**
 * Does the member take new commands at all? Not while its owner has paused it or is
 * draining it (a stale view only guides: the member refuses, and the submitter moves on).
 */
export function takesWork (p: PeerView): boolean {
  return p.load.paused !== true && p.load.draining !== true
}

/** Does the member's last advertisement show room for the request now? */
export function fitsNow (p: PeerView, req: ResourceRequest): boolean {
  return takesWork(p) && matchesPolicy(p, req) && p.load.cpusFree >= req.cpus && p.load.memFree >= (req.memBytes ?? 0) &&
    (req.gpus === 0 || lentGpus(p, req, true) >= req.gpus)
}

function plural (n: number, one: string): string {
  return `${n} ${one}${n === 1 ? '' : 's'}`
}

function describePolicy (req: ResourceRequest): string[] {
  const parts: string[] = []
  if (req.pool !== undefined) parts.push(`in pool "${req.pool}"`)
  const labels = Object.entries(req.labels ?? {})
  if (labels.length > 0) parts.push(`labelled ${labels.map(([k, v]) => `${k}=${v}`).join(', ')}`)
  return parts
}

/** `1 core, 16 GiB of memory and 2 GPUs matching "a100" with at least 40 GiB each, in pool "lab"`. */
export function describeRequest (req: ResourceRequest): string {
  const parts = [plural(req.cpus, 'core')]
  if ((req.memBytes ?? 0) > 0) parts.push(`${formatBytes(req.memBytes!)} of memory`)
  if (req.gpus > 0) {
    let gpus = plural(req.gpus, 'GPU')
    if (req.gpuModel !== undefined) gpus += ` matching "${req.gpuModel}"`
    if ((req.gpuMemBytes ?? 0) > 0) gpus += ` with at least ${formatBytes(req.gpuMemBytes!)}${req.gpus === 1 ? '' : ' each'}`
    parts.push(gpus)
  }
  const what = parts.length === 1 ? parts[0] : `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)!}`
  return [what, ...describePolicy(req)].join(', ')
}

/** `16 cores, 64 GiB of memory and 2 GPUs (2× NVIDIA A100-SXM4-80GB with 80 GiB)`. */
function describeOffer (p: PeerView): string {
  const lent = new Set(p.offer.gpus)
  const kinds = new Map<string, number>()
  for (const g of p.resources.gpus) {
    if (!lent.has(g.index)) continue
    const k = `${g.model} with ${formatBytes(g.memoryBytes)}`
    kinds.set(k, (kinds.get(k) ?? 0) + 1)
  }
  const gpus = kinds.size === 0 ? '' : ` (${[...kinds].map(([k, n]) => `${n}× ${k}`).join(', ')})`
  return `${plural(p.offer.cpus, 'core')}, ${formatBytes(p.offer.memBytes)} of memory and ${plural(p.offer.gpus.length, 'GPU')}${gpus}`
}

function largest (view: PeerView[]): PeerView | undefined {
  return [...view].sort((a, b) => (b.offer.gpus.length - a.offer.gpus.length) || (b.offer.cpus - a.offer.cpus) || (b.offer.memBytes - a.offer.memBytes))[0]
}

/** Why nothing could ever fit: the request in full, and the largest member that could be asked. */
/**
 * How many shards of `req` the grid could hold at once if every member were idle: each
 * member takes as many as its whole offer fits (shards are alike, so filling members one by
 * one is the best there is). Infinity for a request of nothing.
 */
export function gangCapacity (view: PeerView[], req: ResourceRequest): number {
  let total = 0
  for (const p of view) {
    if (p.leaving === true || !fitsEver(p, req)) continue
    const fit = [
      req.cpus > 0 ? Math.floor(p.offer.cpus / req.cpus) : Infinity,
      (req.memBytes ?? 0) > 0 ? Math.floor(p.offer.memBytes / req.memBytes!) : Infinity,
      req.gpus > 0 ? Math.floor(lentGpus(p, req, false) / req.gpus) : Infinity
    ]
    total += Math.min(...fit)
  }
  return total
}

/** A gang of `shards` that the grid could never hold at once, with why; undefined when it could. */
export function impossibleGang (view: PeerView[], req: ResourceRequest, shards: number): VgridError | undefined {
  const capacity = gangCapacity(view, req)
  if (capacity >= shards) return undefined
  return new VgridError('ERR_IMPOSSIBLE_REQUEST',
    `a gang of ${shards} shards, each needing ${describeRequest(req)}, can never start: the members of the grid could hold at most ${capacity} at once`,
    'lower -N or what each shard asks for, or add members (see what each lends with `vgrid peers`)')
}

function impossible (view: PeerView[], req: ResourceRequest): VgridError {
  const present = view.filter((p) => p.leaving !== true)
  const eligible = present.filter((p) => matchesPolicy(p, req))
  const policy = describePolicy(req)
  const big = largest(eligible.length > 0 ? eligible : present)
  const pools = [...new Set(present.flatMap((p) => p.offer.pools ?? []))].sort()
  if (big !== undefined && req.pool !== undefined && !pools.includes(req.pool)) {
    // Most likely a misspelt pool, or a shape misspelt into a pool name (`-P gpu--2`): name the ones there are.
    return new VgridError('ERR_IMPOSSIBLE_REQUEST',
      `no member of the grid is in pool "${req.pool}": ${pools.length === 0 ? 'no member is in any pool' : `the grid's pools are ${pools.join(', ')}`}`,
      `-P reads cpu-N, gpu-N, gpu-MODEL and gpu-MODEL-N as shapes, any other name as a pool (vgrid agent --pool NAME)`)
  }
  let what: string
  if (big === undefined) what = 'the grid has no members'
  else if (eligible.length === 0) what = `no member is ${policy.join(' and ')}; the largest member, ${big.resources.host}, lends ${describeOffer(big)}`
  else what = `the largest member${policy.length > 0 ? ` ${policy.join(' and ')}` : ''}, ${big.resources.host}, lends ${describeOffer(big)}`
  return new VgridError('ERR_IMPOSSIBLE_REQUEST', `no member of the grid could ever run a command that needs ${describeRequest(req)}: ${what}`,
    policy.length > 0 ? 'ask for less, or see each member\'s pools, labels and resources with `vgrid peers --json`' : 'ask for less, or see what each member lends with `vgrid peers`')
}

/**
 * Members to try, best first: those with room now, most free capacity first (the local agent
 * wins ties: no network hop). Throws ERR_IMPOSSIBLE_REQUEST when no member could ever fit,
 * naming the largest, ERR_NO_SPACE when none that could has room for a synced workspace of
 * `syncBytes` (hasRoomFor: waiting would not make room), and ERR_NO_CAPACITY when all that
 * could are busy.
 */
export function candidates (view: PeerView[], req: ResourceRequest, syncBytes?: number): PeerView[] {
  const possible = view.filter((p) => p.leaving !== true && fitsEver(p, req))
  if (possible.length === 0) throw impossible(view, req)
  const roomy = possible.filter((p) => hasRoomFor(p, syncBytes))
  if (roomy.length === 0) throw noRoom(possible, syncBytes!)
  const now = roomy.filter((p) => fitsNow(p, req))
  if (now.length === 0) {
    const closed = possible.every((p) => !takesWork(p))
    throw new VgridError('ERR_NO_CAPACITY', `every member that could run a command needing ${describeRequest(req)} is ${closed ? 'paused or draining (by its owner)' : 'busy'}`,
      closed ? 'it starts when one lends again (vgrid agent set --resume there; see `vgrid peers`)' : 'it starts when one has room (see `vgrid peers`)')
  }
  return now.sort((a, b) => (freeScore(b, req) - freeScore(a, req)) || (Number(b.self) - Number(a.self)))
}

/**
 * candidates() for a run pinned to one member (`--on`): one it could never run on is said
 * as what that member lacks, not as what the whole grid lacks (others may well fit).
 */
export function pinnedCandidates (member: PeerView, req: ResourceRequest, syncBytes?: number): PeerView[] {
  if (member.leaving !== true && !fitsEver(member, req)) {
    const policy = describePolicy(req)
    const lacks = matchesPolicy(member, req) ? `it lends ${describeOffer(member)}` : `it is not ${policy.join(' and ')}`
    throw new VgridError('ERR_IMPOSSIBLE_REQUEST', `${member.resources.host} (${shortPeerId(member.peer)}) could never run a command that needs ${describeRequest(req)}: ${lacks}`,
      'ask for less, or leave out --on to let any member that could run it (see what each lends with `vgrid peers`)')
  }
  return candidates([member], req, syncBytes)
}

/**
 * `--on PEER`: a full peer id, a unique prefix or suffix of one (at least 4 characters; the
 * suffix as `vgrid peers` shows it, `…Sn62Xk`, or without the `…`), or a hostname.
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
  const byPart = view.filter((p) => matchesPeerPart(p.peer, on))
  if (byPart.length === 1) return byPart[0]
  if (byPart.length > 1) {
    throw new VgridError('ERR_AMBIGUOUS_PEER', `${byPart.length} members have peer ids starting or ending with ${on}`, 'give more characters of the peer id')
  }
  throw new VgridError('ERR_NO_SUCH_PEER', `no member of the grid is called ${on}`, 'see the members with `vgrid peers`')
}

/**
 * A run pinned to a member that left the grid lately: it waits for it to come back, queued
 * as it would be behind a busy member (hence ERR_NO_CAPACITY).
 */
export class MemberAway extends VgridError {
  constructor (readonly member: DepartedMember) {
    super('ERR_NO_CAPACITY', `${member.host} (${shortPeerId(member.peer)}) left the grid ${formatAgo(member.leftMsAgo)} ago; waiting for it to come back`,
      'it starts when the member is back in `vgrid peers`; Ctrl-C gives up')
  }
}

/** `40 s`, `12 min`, `3 h`: how long ago, to the unit a person would say. */
export function formatAgo (ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 120) return `${s} s`
  if (s < 120 * 60) return `${Math.round(s / 60)} min`
  return `${Math.round(s / 3600)} h`
}

/**
 * `--on PEER` named as resolvePeer takes it, for a run: a member that left the grid lately
 * (`departed`, the latest first) throws MemberAway, so the run waits for it; a name no member
 * ever had is ERR_NO_SUCH_PEER, as before.
 */
export function resolvePinned (view: PeerView[], departed: DepartedMember[], on: string): PeerView {
  try {
    return resolvePeer(view, on)
  } catch (err) {
    if (!(err instanceof VgridError) || err.code !== 'ERR_NO_SUCH_PEER') throw err
    const gone = departed.find((d) => d.peer === on) ??
      departed.find((d) => d.host.toLowerCase() === on.toLowerCase()) ??
      departed.find((d) => matchesPeerPart(d.peer, on))
    if (gone !== undefined) throw new MemberAway(gone)
    throw err
  }
}

/** Members a submitter claims on at once: the first to accept runs the command. */
export const CLAIM_FANOUT = 2

/** A request without GPUs weighs a member with free GPUs this much less: keep them for GPU work. */
export const GPU_BOX_WEIGHT_FOR_CPU_WORK = 0.25

/**
 * How much room a member shows for a request, for placement weights: its free share of cores;
 * for a GPU request plus its free GPUs that match; a CPU-only request weighs members with free
 * GPUs less, so the cores GPU jobs need beside their GPUs stay free (measured with the
 * simulator: counting free GPUs for every request starved 4-GPU jobs of cores).
 */
export function freeScore (p: PeerView, req?: ResourceRequest): number {
  const cores = p.load.cpusFree / Math.max(1, p.offer.cpus)
  if (req === undefined) return cores + p.load.gpusFree.length
  if (req.gpus > 0) return cores + lentGpus(p, req, true)
  return p.load.gpusFree.length > 0 ? cores * GPU_BOX_WEIGHT_FOR_CPU_WORK : cores
}

/**
 * Up to `k` distinct members of `fitting` to claim on, drawn without replacement with
 * probability proportional to their free capacity (freeScore; a member that fits but shows
 * none still has a small chance). Spreading the draw is what keeps many submitters with the
 * same view from all claiming the emptiest member at once. `random` returns [0, 1).
 */
export function chooseClaimTargets<P extends PeerView> (fitting: P[], k: number, random: () => number = Math.random, req?: ResourceRequest): P[] {
  const pool = fitting.map((p) => ({ p, w: Math.max(freeScore(p, req), 1e-3) }))
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

/**
 * The members whose owners accept commands from this one (acceptsFrom, as advertised); when
 * that leaves none that could ever run the request though others could, ERR_NOT_ALLOWED
 * says so (a run no member will take must not wait for room). A member named with --on is
 * asked anyway: its own refusal says why.
 */
export function accepting (view: PeerView[], spec: ResourceRequest, self: string): PeerView[] {
  const open = view.filter((p) => acceptsFrom(p, self))
  if (open.length === view.length) return view
  try {
    candidates(open, spec)
  } catch (err) {
    if (!(err instanceof VgridError) || err.code !== 'ERR_IMPOSSIBLE_REQUEST') throw err
    try {
      candidates(view, spec)
    } catch (all) {
      if (all instanceof VgridError && all.code === 'ERR_IMPOSSIBLE_REQUEST') throw all
    }
    throw new VgridError('ERR_NOT_ALLOWED', 'every member that could run it runs commands only from members its owner accepts (--accept-from), and not from this one',
      `ask the owner of one to accept ${self}: vgrid agent set --accept-from …`)
  }
  return open
}

/**
 * Where each shard of a gang goes now, in order: the members this view shows room on (not
 * leaving, taking commands from `self`), their free room taken down as shards are assigned;
 * the shards' claims then decide. `address`: how the other shards reach it (its first IP
 * address, else its host name), for MASTER_ADDR. Undefined when not every shard fits at once.
 */
export function assignGang (view: PeerView[], shards: ResourceRequest[], self: string): Array<{ peer: string, address: string }> | undefined {
  const room = view.filter((p) => p.leaving !== true && acceptsFrom(p, self)).map((p) => ({ ...p, load: { ...p.load, gpusFree: [...p.load.gpusFree] } }))
  const out: Array<{ peer: string, address: string }> = []
  for (const req of shards) {
    const p = room.find((v) => fitsNow(v, req))
    if (p === undefined) return undefined
    p.load.cpusFree -= req.cpus
    p.load.memFree -= req.memBytes ?? 0
    p.load.gpusFree.splice(0, req.gpus)
    out.push({ peer: p.peer, address: addressOf(p) })
  }
  return out
}

/** A member's first IP address as it advertises it, else its host name. */
function addressOf (p: PeerView): string {
  for (const a of p.addrs) {
    const m = /^\/ip[46]\/([^/]+)\//.exec(a)
    if (m !== null) return m[1]!
  }
  return p.resources.host
}
