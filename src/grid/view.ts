/**
 * The membership view: the freshest advertisement of every member, when we last heard from
 * it, and who left recently. Pure bookkeeping with an injected clock, so its rules (ordering,
 * goodbyes, expiry, tombstones) are tested without a network.
 */
import { DEPARTED_MEMORY_MS, MAX_DEPARTED_MEMBERS, MAX_TOMBSTONES, TOMBSTONE_TTL_MS, VIEW_EXPIRY_MS, memberExpiryMs } from './constants.js'
import type { DepartedMember, PeerAd, PeerView } from './types.js'

export type ApplyResult = 'joined' | 'changed' | 'refreshed' | 'stale' | 'left'

interface Member { ad: PeerAd, seenAt: number, key: string }
interface Tombstone { startedAt: number, seq: number, at: number }

/** True when `a` was published after `b` by the same member (restarts count as newer). */
function newer (a: { startedAt: number, seq: number }, b: { startedAt: number, seq: number }): boolean {
  return a.startedAt > b.startedAt || (a.startedAt === b.startedAt && a.seq > b.seq)
}

/** What a reader of the view would notice changing; seq alone changes every second. */
function contentKey (ad: PeerAd): string {
  return JSON.stringify([ad.addrs, ad.version, ad.resources, ad.offer, ad.load])
}

export class MemberView {
  private readonly members = new Map<string, Member>()
  private readonly tombstones = new Map<string, Tombstone>()
  /** Members that left, oldest first: who they were and when (this view's clock). */
  private readonly gone = new Map<string, { host: string, at: number }>()
  private self: PeerAd | undefined
  private readonly listeners = new Set<() => void>()

  constructor (
    readonly selfPeer: string,
    private readonly now: () => number = () => performance.now(),
    private readonly expiryMs = VIEW_EXPIRY_MS,
    private readonly onListenerError: (err: unknown) => void = () => {}
  ) {}

  get size (): number { return this.members.size + (this.self === undefined ? 0 : 1) }

  has (peer: string): boolean { return this.members.has(peer) }

  onChange (cb: () => void): () => void {
    this.listeners.add(cb)
    return () => { this.listeners.delete(cb) }
  }

  /** Our own advertisement, shown first in the view. */
  getSelf (): PeerAd | undefined {
    return this.self
  }

  setSelf (ad: PeerAd): void {
    const changed = this.self === undefined || contentKey(this.self) !== contentKey(ad)
    this.self = ad
    if (changed) this.emit()
  }

  /** Takes a validated advertisement from a member. */
  apply (ad: PeerAd): ApplyResult {
    if (ad.peer === this.selfPeer) return 'stale'
    const stone = this.tombstones.get(ad.peer)
    if (stone !== undefined) {
      if (!newer(ad, stone)) return 'stale'
      this.tombstones.delete(ad.peer)
    }
    const cur = this.members.get(ad.peer)
    if (cur !== undefined && !newer(ad, cur.ad)) return 'stale'
    if (ad.leaving === true) {
      this.bury(ad.peer, ad)
      if (cur === undefined) return 'stale'
      this.members.delete(ad.peer)
      this.emit()
      return 'left'
    }
    const key = contentKey(ad)
    this.members.set(ad.peer, { ad, seenAt: this.now(), key })
    this.gone.delete(ad.peer)
    if (cur === undefined) {
      this.emit()
      return 'joined'
    }
    if (cur.key !== key) {
      this.emit()
      return 'changed'
    }
    return 'refreshed'
  }

  /** Drops a member (its connection closed); a newer advertisement brings it back. */
  remove (peer: string): boolean {
    const cur = this.members.get(peer)
    if (cur === undefined) return false
    this.members.delete(peer)
    this.bury(peer, cur.ad)
    this.emit()
    return true
  }

  /**
   * Drops members not heard from for the expiry time (longer for a member that says it
   * refreshes less often: memberExpiryMs); returns their peer ids, and tells `onExpired` of
   * each with how long it was silent.
   */
  expire (onExpired?: (ad: PeerAd, silentMs: number) => void): string[] {
    const now = this.now()
    const gone: string[] = []
    for (const [peer, m] of this.members) {
      if (now - m.seenAt > memberExpiryMs(m.ad.every, this.expiryMs)) {
        gone.push(peer)
        onExpired?.(m.ad, now - m.seenAt)
      }
    }
    for (const peer of gone) {
      this.bury(peer, this.members.get(peer)!.ad)
      this.members.delete(peer)
    }
    for (const [peer, t] of this.tombstones) {
      if (now - t.at > TOMBSTONE_TTL_MS) this.tombstones.delete(peer)
    }
    if (gone.length > 0) this.emit()
    return gone
  }

  /** Every member, this agent first, then the most recently heard from. */
  snapshot (): PeerView[] {
    const now = this.now()
    const out: PeerView[] = []
    if (this.self !== undefined) out.push({ ...this.self, lastSeenMs: 0, self: true })
    const others = [...this.members.values()]
      .map((m) => ({ ...m.ad, lastSeenMs: Math.max(0, Math.round(now - m.seenAt)), self: false }))
      .sort((a, b) => a.lastSeenMs - b.lastSeenMs)
    return out.concat(others)
  }

  /** Members not heard from for more than `ms(ad)` milliseconds, with how long. */
  silent (ms: (ad: PeerAd) => number): Array<{ ad: PeerAd, silentMs: number }> {
    const now = this.now()
    const out: Array<{ ad: PeerAd, silentMs: number }> = []
    for (const m of this.members.values()) {
      if (now - m.seenAt > ms(m.ad)) out.push({ ad: m.ad, silentMs: now - m.seenAt })
    }
    return out
  }

  /** Members that left within DEPARTED_MEMORY_MS and have not come back, the latest first. */
  departed (): DepartedMember[] {
    const now = this.now()
    const out: DepartedMember[] = []
    for (const [peer, g] of this.gone) {
      if (now - g.at > DEPARTED_MEMORY_MS) this.gone.delete(peer)
      else out.push({ peer, host: g.host, leftMsAgo: Math.max(0, Math.round(now - g.at)) })
    }
    return out.reverse()
  }

  get (peer: string): PeerAd | undefined {
    return peer === this.selfPeer ? this.self : this.members.get(peer)?.ad
  }

  private bury (peer: string, ad: PeerAd): void {
    // Map iteration is in insertion order: the first entry is the oldest
    if (this.tombstones.size >= MAX_TOMBSTONES) this.tombstones.delete(this.tombstones.keys().next().value!)
    this.tombstones.set(peer, { startedAt: ad.startedAt, seq: ad.seq, at: this.now() })
    this.gone.delete(peer)
    if (this.gone.size >= MAX_DEPARTED_MEMBERS) this.gone.delete(this.gone.keys().next().value!)
    this.gone.set(peer, { host: ad.resources.host, at: this.now() })
  }

  private emit (): void {
    for (const cb of [...this.listeners]) {
      try {
        cb()
      } catch (err) {
        this.onListenerError(err)
      }
    }
  }
}
