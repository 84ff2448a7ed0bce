/**
 * Advertisements: publishing ours on the gossip topic at every change and every
 * advertIntervalMs (once a second in a small grid, less often in a large one), and in a hello
 * to each new neighbour; checking and applying everyone else's, and keeping the view in step
 * with connections (a goodbye, a last connection closing, or silence past memberExpiryMs
 * removes a member). A member that vanishes without a goodbye, falls silent, or (should the
 * scoring ever be turned on again) is graylisted by gossipsub is a warning, never a silent
 * disappearance.
 */
import { TopicValidatorResult, type Message, type SubscriptionChangeData } from '@libp2p/gossipsub'
import type { Connection, Logger, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { decodePeerAd, encodePeerAd } from '../protocol/advert.js'
import { dialableAddrs } from './addrs.js'
import {
  ADVERT_TOPIC, LEAVE_FLUSH_MS, LOAD_SETTLE_MS, MAX_ADVERT_BYTES, MAX_DIAL_ADDRS, MIN_PUBLISH_GAP_MS, NEW_MEMBER_MS,
  SILENCE_WARN_INTERVALS, VIEW_EXPIRY_MS, VIEW_SWEEP_INTERVAL_MS, ADVERT_INTERVAL_MS, advertIntervalMs, statedIntervalMs
} from './constants.js'
import { GRAYLIST_THRESHOLD } from './gossip-params.js'
import type { Connectivity } from './connectivity.js'
import { sendHello, serveHello, type HelloMember } from './hello.js'
import type { GridNode } from './node.js'
import type { PeerAd } from './types.js'
import type { MemberView } from './view.js'

export interface MembershipInit {
  startedAt: number
  version: string
  describe: () => Pick<PeerAd, 'resources' | 'offer' | 'load'>
  /** Our addresses as they go into an advertisement. */
  addrs: () => string[]
  /** What the owner should read in the agent's log. */
  warn: (msg: string) => void
  /** The refresh interval, in place of advertIntervalMs (GridInit.advertEveryMs). */
  everyMs?: number
}

export class Membership {
  private seq = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private timerAt = 0
  private lastPublishAt = -Infinity
  private sweeper: ReturnType<typeof setInterval> | undefined
  private stopped = false
  /** Ads the topic validator already decoded, for the 'message' handler that follows. */
  private readonly checked = new WeakMap<Message, PeerAd>()
  /** Members already warned about (silent, graylisted), so each episode is one line. */
  private readonly warnedSilent = new Set<string>()
  private readonly warnedGraylisted = new Set<string>()

  constructor (
    private readonly node: GridNode,
    private readonly view: MemberView,
    private readonly connectivity: Connectivity,
    private readonly init: MembershipInit,
    private readonly log: Logger
  ) {}

  /** Subscribes and publishes the first advertisement (describe() errors surface here). */
  async start (): Promise<void> {
    const pubsub = this.node.services.pubsub
    await serveHello(this.node, {
      onAd: (ad, from) => { this.accept(ad, from) },
      onMembers: (members) => { this.meet(members) }
    }, this.log)
    this.node.addEventListener('connection:open', this.onConnectionOpen)
    pubsub.topicValidators.set(ADVERT_TOPIC, this.validate)
    pubsub.addEventListener('message', this.onMessage)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    pubsub.subscribe(ADVERT_TOPIC)
    this.view.setSelf(this.buildAd(false))
    this.publish()
    this.sweeper = setInterval(() => { this.sweep() }, VIEW_SWEEP_INTERVAL_MS)
    this.sweeper.unref()
  }

  /**
   * Publishes soon: LOAD_SETTLE_MS from now, or MIN_PUBLISH_GAP_MS after the last publish if
   * that is later.
   */
  publishNow (): void {
    if (this.stopped) return
    this.schedule(Math.max(performance.now() + LOAD_SETTLE_MS, this.lastPublishAt + MIN_PUBLISH_GAP_MS))
  }

  /** Says goodbye (bounded by LEAVE_FLUSH_MS) and stops publishing. */
  async leave (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.timer)
    clearInterval(this.sweeper)
    const pubsub = this.node.services.pubsub
    pubsub.removeEventListener('message', this.onMessage)
    pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
    this.node.removeEventListener('connection:open', this.onConnectionOpen)
    let data: Uint8Array
    try {
      data = encodePeerAd(this.buildAd(true))
    } catch (err) {
      this.log.error('cannot build the goodbye advertisement: %s', (err as Error).message)
      return
    }
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      pubsub.publish(ADVERT_TOPIC, data).catch((err: Error) => { this.log('goodbye not sent: %s', err.message) }),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, LEAVE_FLUSH_MS) })
    ])
    clearTimeout(timer)
  }

  /** Expires silent members, and warns of those falling silent or graylisted. */
  private sweep (): void {
    this.view.expire((ad, silentMs) => {
      this.warnedSilent.delete(ad.peer)
      this.init.warn(`member ${name(ad.peer, ad.resources.host)} not heard from for ${Math.round(silentMs / 1000)} s: dropped from the view`)
    })
    // a member's interval grows with the grid as it joins: its last ad may state a shorter one
    const silent = this.view.silent((ad) => Math.max(VIEW_EXPIRY_MS / 2, SILENCE_WARN_INTERVALS * statedIntervalMs(ad.every) + ADVERT_INTERVAL_MS))
    const now = new Set(silent.map((s) => s.ad.peer))
    for (const { ad, silentMs } of silent) {
      if (this.warnedSilent.has(ad.peer)) continue
      this.warnedSilent.add(ad.peer)
      const connected = this.node.getConnections(peerIdFromString(ad.peer)).length > 0
      this.init.warn(`member ${name(ad.peer, ad.resources.host)} silent for ${Math.round(silentMs / 1000)} s` +
        (connected ? ' although connected: its advertisements no longer arrive' : ' and not connected'))
    }
    for (const peer of this.warnedSilent) if (!now.has(peer)) this.warnedSilent.delete(peer)
    const pubsub = this.node.services.pubsub
    // the implementation has getScore; the GossipSub interface does not declare it
    const getScore = (pubsub as unknown as { getScore?: (id: string) => number }).getScore?.bind(pubsub)
    if (getScore === undefined) return
    for (const pid of pubsub.getPeers()) {
      const id = pid.toString()
      const score = getScore(id)
      if (score >= GRAYLIST_THRESHOLD) { this.warnedGraylisted.delete(id); continue }
      if (this.warnedGraylisted.has(id)) continue
      this.warnedGraylisted.add(id)
      this.init.warn(`member ${name(id, this.view.get(id)?.resources.host)} is graylisted by gossip (score ${score.toFixed(1)}): what it sends is ignored`)
    }
  }

  /** How often we refresh our advertisement, for the grid as we see it now. */
  private interval (): number {
    return this.init.everyMs ?? advertIntervalMs(this.view.size)
  }

  private schedule (at: number): void {
    if (this.timer !== undefined && this.timerAt <= at) return
    clearTimeout(this.timer)
    this.timerAt = at
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.publish()
    }, Math.max(0, at - performance.now()))
  }

  /**
   * This agent's entry in the view, as of now rather than as of the last publish, so the
   * local `vgrid peers` and placement see reservations at once. Changes nothing on the wire
   * and notifies nobody (the next publish does).
   */
  currentSelf (): PeerAd {
    const d = this.init.describe()
    return { ...this.view.getSelf() ?? this.buildAd(false), resources: d.resources, offer: d.offer, load: d.load }
  }

  private buildAd (leaving: boolean): PeerAd {
    const d = this.init.describe()
    const ad: PeerAd = {
      v: 1,
      peer: this.node.peerId.toString(),
      seq: ++this.seq,
      startedAt: this.init.startedAt,
      addrs: this.init.addrs(),
      version: this.init.version,
      resources: d.resources,
      offer: d.offer,
      load: d.load,
      every: this.interval()
    }
    if (leaving) ad.leaving = true
    return ad
  }

  private publish (): void {
    if (this.stopped) return
    this.lastPublishAt = performance.now()
    this.schedule(this.lastPublishAt + this.interval())
    let data: Uint8Array
    try {
      const ad = this.buildAd(false)
      data = encodePeerAd(ad)
      if (data.byteLength > MAX_ADVERT_BYTES) {
        this.log.error('our advertisement is %d bytes, past the limit of %d: not sent (too many labels or GPUs?)', data.byteLength, MAX_ADVERT_BYTES)
        return
      }
      this.view.setSelf(ad)
    } catch (err) {
      this.log.error('cannot build our advertisement: %s', (err as Error).message)
      return
    }
    this.node.services.pubsub.publish(ADVERT_TOPIC, data)
      .catch((err: Error) => { this.log('publish failed: %s', err.message) })
  }

  /**
   * Runs before gossipsub delivers or forwards a message: a malformed ad, or one signed by
   * a peer other than its subject, is rejected here, so it never travels further.
   */
  private readonly validate = (_from: PeerId, msg: Message): TopicValidatorResult => {
    if (msg.type !== 'signed') return TopicValidatorResult.Reject
    let ad: PeerAd
    try {
      ad = decodePeerAd(msg.data)
    } catch (err) {
      this.log('refused an advertisement signed by %s: %s', msg.from, (err as Error).message)
      return TopicValidatorResult.Reject
    }
    if (ad.peer !== msg.from.toString()) {
      this.log('refused an advertisement for %s signed by %s', ad.peer, msg.from)
      return TopicValidatorResult.Reject
    }
    this.checked.set(msg, ad)
    return TopicValidatorResult.Accept
  }

  private readonly onMessage = (evt: CustomEvent<Message>): void => {
    const msg = evt.detail
    if (msg.topic !== ADVERT_TOPIC) return
    const ad = this.checked.get(msg)
    if (ad !== undefined && msg.type === 'signed') this.accept(ad, msg.from)
  }

  /** Applies a checked advertisement from `from` (its signer or the hello's sender). */
  private accept (ad: PeerAd, from: PeerId): void {
    const result = this.view.apply(ad)
    if (result === 'joined') this.log('%s joined (%s)', ad.peer, ad.resources.host)
    else if (result === 'left') this.log('%s left', ad.peer)
    if (result === 'joined' || result === 'changed' || result === 'refreshed') {
      // heard of a member we are not connected to (relayed by the mesh): connect
      if (this.node.getConnections(from).length === 0) {
        this.connectivity.dialPeer(from, dialableAddrs(ad.addrs, ad.peer, MAX_DIAL_ADDRS))
      }
    }
  }

  /**
   * A new connection: greet at once rather than after identify, which costs another round
   * trip (and more under load). A peer without the hello protocol just refuses the stream.
   */
  private readonly onConnectionOpen = (evt: CustomEvent<Connection>): void => {
    if (this.stopped) return
    let ad: PeerAd
    try {
      ad = this.buildAd(false)
    } catch (err) {
      this.log.error('cannot build our advertisement: %s', (err as Error).message)
      return
    }
    sendHello(evt.detail, ad, () => this.knownMembers(), this.log)
  }

  /** Members in our view, as a hello lists them. */
  private knownMembers (): HelloMember[] {
    return this.view.snapshot().filter((p) => !p.self).map((p) => ({ peer: p.peer, addrs: p.addrs }))
  }

  /** Dials the members a hello listed that we are not connected to. */
  private meet (members: HelloMember[]): void {
    const self = this.node.peerId.toString()
    for (const m of members) {
      if (m.peer === self) continue
      this.connectivity.dialPeer(peerIdFromString(m.peer), dialableAddrs(m.addrs, m.peer, MAX_DIAL_ADDRS))
    }
  }

  /**
   * A neighbour starts listening. A new member that knows no one else yet publishes at once,
   * so that the members it is not connected to learn of it through the mesh and dial it. The
   * others do not: the hello told the neighbour about them, and every member publishing at
   * every subscription would cost a grid that joins together N × N × N messages.
   */
  private readonly onSubscriptionChange = (evt: CustomEvent<SubscriptionChangeData>): void => {
    if (Date.now() - this.init.startedAt > NEW_MEMBER_MS || this.view.size > 2) return
    if (evt.detail.subscriptions.some((s) => s.subscribe && s.topic === ADVERT_TOPIC)) this.publishNow()
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    const ad = this.view.get(peer)
    // a member that said goodbye has left the view already: this one vanished
    if (this.view.remove(peer)) this.init.warn(`member ${name(peer, ad?.resources.host)} dropped: its connection closed without a goodbye`)
  }
}

/** `…a1b2c3d4 (host)`: how the log names a member. */
function name (peer: string, host: string | undefined): string {
  return `${peer.slice(-8)}${host === undefined ? '' : ` (${host})`}`
}
