/**
 * Claims (DESIGN §2): a submitter asks two or more members at once to hold resources for a
 * command; each executor reserves against its true ledger, atomically, or refuses. The first
 * to accept runs the command and the others are released. A claim is the first phase of an
 * exec stream:
 *
 *   submitter → executor   exec request
 *   executor  → submitter  { t: 'claimed', leaseMs }   (or an error event: refused)
 *   submitter → executor   { t: 'go' } | { t: 'release' }
 *
 * The executor holds the reservation for at most the lease: a submitter that dies, hangs or
 * forgets cannot keep it longer, and one whose stream closes releases it at once.
 */
import type { FrameChannel } from '../common/channel.js'
import { VgridError, fromWire } from '../common/errors.js'
import { withTimeout } from '../common/timeout.js'
import { parseExecEvent } from '../exec/index.js'
import type { PeerView } from '../grid/index.js'
import { parseClaimDecision, parseClaimed, type ClaimDecision, type ClaimedMessage } from '../protocol/exec.js'
import { CLAIM_LEASE_MS, CLAIM_REPLY_TIMEOUT_MS } from './constants.js'

/** The executor's answer when its reservation ends unused: not an error of the command. */
export class ClaimReleased extends Error {
  constructor (why: string) {
    super(`claim released: ${why}`)
  }
}

/**
 * Executor: tells the submitter the resources are held, and waits for its decision. Resolves
 * on `go`; throws ClaimReleased on `release`, the end of the stream, or the lease running out.
 * `sent` is called once the answer is on its way, before the wait.
 */
export async function holdClaim (channel: FrameChannel, sent?: () => void, leaseMs = CLAIM_LEASE_MS): Promise<void> {
  await channel.send({ t: 'claimed', leaseMs } satisfies ClaimedMessage)
  sent?.()
  let raw: unknown
  try {
    raw = await withTimeout(channel.recv(), leaseMs, `no answer to the claim within its lease of ${leaseMs} ms`)
  } catch (err) {
    throw new ClaimReleased((err as Error).message)
  }
  if (raw === undefined) throw new ClaimReleased('the submitter went away')
  if (parseClaimDecision(raw).t === 'release') throw new ClaimReleased('the submitter placed the command elsewhere')
}

export interface Claim<P extends PeerView = PeerView> {
  target: P
  channel: FrameChannel
  leaseMs: number
}

/**
 * Submitter: the executor's first answer on a freshly sent exec request: the claim, or the
 * refusal as an error (ERR_NO_CAPACITY when it is only busy).
 */
async function claimAnswer (channel: FrameChannel, host: string): Promise<number> {
  const raw = await withTimeout(channel.recv(), CLAIM_REPLY_TIMEOUT_MS, `${host} did not answer a claim within ${CLAIM_REPLY_TIMEOUT_MS} ms`)
  if (raw === undefined) throw new VgridError('ERR_PEER_LOST', `${host} closed the connection before answering a claim`)
  const claimed = parseClaimed(raw)
  if (claimed !== undefined) return claimed.leaseMs
  const ev = parseExecEvent(raw)
  if (ev.t === 'error') throw fromWire(ev.error)
  throw new VgridError('ERR_BAD_MESSAGE', `malformed message: ${host} answered a claim with ${ev.t}`)
}

/** Tells a claimed executor it is not needed; never throws. */
export function release (c: Claim): void {
  void c.channel.send({ t: 'release' } satisfies ClaimDecision).catch(() => {}).finally(() => { void c.channel.close().catch(() => {}) })
}

/**
 * Claims on every target at once (`open` opens the exec stream and sends the request). The
 * first acceptance is returned; any later one is released at once. When none accepts,
 * returns the refusals (one per target).
 */
export async function claimFirst<P extends PeerView> (targets: P[], open: (target: P) => Promise<FrameChannel>): Promise<{ claim: Claim<P> } | { refused: Array<{ target: P, error: Error }> }> {
  return await new Promise((resolve) => {
    let settled = 0
    let won = false
    const refused: Array<{ target: P, error: Error }> = []
    for (const target of targets) {
      void (async () => {
        let channel: FrameChannel | undefined
        try {
          channel = await open(target)
          const leaseMs = await claimAnswer(channel, target.resources.host)
          const claim = { target, channel, leaseMs }
          if (won) { release(claim); return }
          won = true
          resolve({ claim })
        } catch (err) {
          channel?.destroy()
          refused.push({ target, error: err as Error })
        } finally {
          if (++settled === targets.length && !won) resolve({ refused })
        }
      })()
    }
    if (targets.length === 0) resolve({ refused })
  })
}

/** Refusals remembered at most; past it the book starts again (a refusal only saves a claim). */
const MAX_REMEMBERED_REFUSALS = 4096

/**
 * The members that refused a request shape, with the advertisement they had then: asking
 * again on the same view only earns the same refusal (the simulator measured 8× fewer claims
 * with this rule, at the same completion times). A newer advertisement clears it.
 */
export class Refusals {
  /** By member, then by request shape: the advertisement it refused under. */
  private readonly seen = new Map<string, Map<string, { startedAt: number, seq: number }>>()
  private count = 0

  note (shape: string, p: PeerView): void {
    if (this.count >= MAX_REMEMBERED_REFUSALS) { this.seen.clear(); this.count = 0 }
    let shapes = this.seen.get(p.peer)
    if (shapes === undefined) this.seen.set(p.peer, shapes = new Map())
    if (!shapes.has(shape)) this.count++
    shapes.set(shape, { startedAt: p.startedAt, seq: p.seq })
  }

  /** Room was freed on `peer` since it refused: it may be asked again, whatever it refused. */
  forget (peer: string): void {
    this.count -= this.seen.get(peer)?.size ?? 0
    this.seen.delete(peer)
  }

  stale (shape: string, p: PeerView): boolean {
    const r = this.seen.get(p.peer)?.get(shape)
    return r !== undefined && r.startedAt === p.startedAt && r.seq >= p.seq
  }

  /** Members that had no disk space for a workspace, with the room they advertised then. */
  private readonly noRoom = new Map<string, { room: number, error: VgridError }>()

  noteFull (workspace: string, p: PeerView, error: VgridError): void {
    if (this.noRoom.size >= MAX_REMEMBERED_REFUSALS) this.noRoom.clear()
    this.noRoom.set(`${workspace}\0${p.peer}`, { room: p.load.storeRoom ?? 0, error })
  }

  /**
   * Its refusal, while it advertises no more room than when it refused the workspace: it is
   * not asked for that workspace again until then.
   */
  full (workspace: string, p: PeerView): VgridError | undefined {
    const r = this.noRoom.get(`${workspace}\0${p.peer}`)
    return r !== undefined && (p.load.storeRoom ?? 0) < r.room + MORE_ROOM_BYTES ? r.error : undefined
  }
}

/** A member that had no space is asked again once it advertises this much more room (what it stores jitters by a few KiB). */
export const MORE_ROOM_BYTES = 1024 ** 2

export const GANG_NOT_PLACED = 'not every shard of the gang could be placed at once'

/** One shard's place in a gang (GangGate.seat). */
export interface GangSeat {
  /** This shard holds its claim: true once every shard does, false when one cannot. */
  hold: () => Promise<boolean>
  /** This shard will not hold one (or is past holding): the others stop waiting for it. */
  fail: () => void
}

/**
 * `vbatch --gang`: every shard claims its member, and none is told to go until all hold
 * their claims; if one cannot (refused, unreachable, or not within timeoutMs, well inside
 * the executors' lease), every claim is released and the gang is placed again later.
 */
export class GangGate {
  private readonly holding = new Set<number>()
  private readonly waiters: Array<(ok: boolean) => void> = []
  private result: boolean | undefined
  private readonly timer: NodeJS.Timeout

  constructor (private readonly size: number, timeoutMs = CLAIM_LEASE_MS / 2) {
    this.timer = setTimeout(() => { this.settle(false) }, timeoutMs)
    this.timer.unref()
  }

  seat (index: number): GangSeat {
    return {
      hold: async () => {
        if (this.result !== undefined) return this.result
        this.holding.add(index)
        if (this.holding.size === this.size) this.settle(true)
        return await new Promise<boolean>((resolve) => { if (this.result !== undefined) resolve(this.result); else this.waiters.push(resolve) })
      },
      fail: () => { this.settle(false) }
    }
  }

  private settle (ok: boolean): void {
    if (this.result !== undefined) return
    this.result = ok
    clearTimeout(this.timer)
    for (const w of this.waiters.splice(0)) w(ok)
  }
}
