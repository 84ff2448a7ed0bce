/**
 * Advertisements: publishing ours on the gossip topic about once a second and on demand (and
 * in a hello to each new neighbour), checking and applying everyone else's, and keeping the
 * view in step with connections (a goodbye, a last connection closing, or silence past
 * VIEW_EXPIRY_MS removes a member).
 */
import { TopicValidatorResult, type Message, type SubscriptionChangeData } from '@libp2p/gossipsub'
import type { Connection, Logger, PeerId } from '@libp2p/interface'
import { decodePeerAd, encodePeerAd } from './advert.js'
import { dialableAddrs } from './addrs.js'
import {
  ADVERT_INTERVAL_MS, ADVERT_TOPIC, LEAVE_FLUSH_MS, MAX_ADVERT_BYTES, MAX_DIAL_ADDRS,
  MIN_PUBLISH_GAP_MS, VIEW_SWEEP_INTERVAL_MS
} from './constants.js'
import type { Connectivity } from './connectivity.js'
import { sendHello, serveHello } from './hello.js'
import type { GridNode } from './node.js'
import type { PeerAd } from './types.js'
import type { MemberView } from './view.js'

export interface MembershipInit {
  startedAt: number
  version: string
  describe: () => Pick<PeerAd, 'resources' | 'offer' | 'load'>
  /** Our addresses as they go into an advertisement. */
  addrs: () => string[]
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
    await serveHello(this.node, (ad, from) => { this.accept(ad, from) }, this.log)
    this.node.addEventListener('connection:open', this.onConnectionOpen)
    pubsub.topicValidators.set(ADVERT_TOPIC, this.validate)
    pubsub.addEventListener('message', this.onMessage)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    pubsub.subscribe(ADVERT_TOPIC)
    this.view.setSelf(this.buildAd(false))
    this.publish()
    this.sweeper = setInterval(() => {
      for (const peer of this.view.expire()) this.log('%s expired: not heard from in time', peer)
    }, VIEW_SWEEP_INTERVAL_MS)
    this.sweeper.unref()
  }

  /** Publishes soon: at once unless we published less than MIN_PUBLISH_GAP_MS ago. */
  publishNow (): void {
    if (this.stopped) return
    this.schedule(Math.max(performance.now(), this.lastPublishAt + MIN_PUBLISH_GAP_MS))
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
      load: d.load
    }
    if (leaving) ad.leaving = true
    return ad
  }

  private publish (): void {
    if (this.stopped) return
    this.lastPublishAt = performance.now()
    this.schedule(this.lastPublishAt + ADVERT_INTERVAL_MS)
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
    sendHello(evt.detail, ad, this.log)
  }

  private readonly onSubscriptionChange = (evt: CustomEvent<SubscriptionChangeData>): void => {
    // a new member listens: tell it about us now rather than within the next second
    if (evt.detail.subscriptions.some((s) => s.subscribe && s.topic === ADVERT_TOPIC)) this.publishNow()
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    if (this.view.remove(evt.detail.toString())) this.log('%s dropped: its last connection closed', evt.detail)
  }
}
