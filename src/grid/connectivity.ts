/**
 * Keeping every member connected to every other: a lab grid is small, and placement, claims
 * and output streams all go straight to the member concerned.
 *
 * - Bootstrap: dial the configured addresses in the background, backing off, until this
 *   agent has a connection; again whenever it loses its last one.
 * - Peer exchange: a member we hear of (an advertisement relayed through the mesh, a DHT
 *   answer) but are not connected to is dialled at the addresses it announced.
 * - DHT: once a DHT server is identified, look up our own id; the answer lists the members
 *   closest to us, which we dial. It connects a new member to the rest in one round trip,
 *   before the gossip mesh has formed.
 * - One connection per pair: of two members that hear of each other, the smaller peer id
 *   dials first; where both dialled anyway (DHT queries dial too), the larger one closes the
 *   connection it dialled once it carries nothing but libp2p's own traffic, and gossipsub is
 *   told to use the one that stays.
 */
import type { Connection, Logger, PeerId, PeerInfo } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { addrPeerId } from './addrs.js'
import {
  BOOTSTRAP_DIAL_TIMEOUT_MS, BOOTSTRAP_FIRST_DELAY_MS, BOOTSTRAP_MAX_DELAY_MS, DHT_PROTOCOL, DUPLICATE_CLOSE_MS, DUPLICATE_SETTLE_MS,
  DUPLICATE_SWEEP_MS, HELLO_PROTOCOL, MAX_DIAL_ADDRS,
  PEER_DIAL_DEFER_MS, PEER_DIAL_RETRY_MS, PEER_DIAL_TIMEOUT_MS
} from './constants.js'
import type { GridNode } from './node.js'
import { sleep } from '../common/timeout.js'
// not AbortSignal.any: this node's controller lives as long as the agent (common/abort.ts)
import { linkedSignal } from '../common/abort.js'

/** How long one DHT self-lookup may take before it is abandoned. */
const DHT_LOOKUP_TIMEOUT_MS = 5_000
/** How long identifying a member again, after one of its connections closed, may take. */
const IDENTIFY_AGAIN_TIMEOUT_MS = 5_000
/** Self-lookups an agent makes when it joins (or comes back after losing every connection). */
const SELF_LOOKUPS_PER_JOIN = 2
/** How long after a DHT server appears an agent checks whether it still needs a self-lookup. */
const SELF_LOOKUP_DELAY_MS = 3_000

export class Connectivity {
  private readonly controller = new AbortController()
  private bootstrapping = false
  private readonly dialing = new Set<string>()
  private readonly failedAt = new Map<string, number>()
  /** Dials left to the other side first (see dialPeer), by peer id. */
  private readonly deferred = new Map<string, ReturnType<typeof setTimeout>>()
  private lookupRunning = false
  private dedupeTimer: ReturnType<typeof setInterval> | undefined
  private lookupAgain = false
  private lookupTimer: ReturnType<typeof setTimeout> | undefined
  /** Self-lookups left for this join (see lookupSelf). */
  private lookupBudget = SELF_LOOKUPS_PER_JOIN

  constructor (
    private readonly node: GridNode,
    private readonly bootstrapAddrs: Multiaddr[],
    private readonly log: Logger,
    /** Whether this agent still lacks members: some it heard of are not connected, or it knows too few. */
    private readonly lacksMembers: () => boolean = () => true
  ) {}

  start (): void {
    // kad-dht adds a peer to its routing table a little after identify (it queues, and may
    // ping it first); a lookup before that finds nothing. Its routing table says when.
    routingTableEvents(this.node)?.addEventListener('peer:add', this.onRoutingTableAdd)
    this.node.addEventListener('peer:identify', this.onIdentify)
    this.node.addEventListener('peer:discovery', this.onDiscovery)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    this.node.addEventListener('connection:open', this.onConnectionOpen)
    this.node.addEventListener('connection:close', this.onConnectionClose)
    this.dedupeTimer = setInterval(() => { this.closeDuplicates() }, DUPLICATE_SWEEP_MS)
    this.dedupeTimer.unref()
    this.bootstrap()
  }

  stop (): void {
    this.controller.abort()
    for (const timer of this.deferred.values()) clearTimeout(timer)
    this.deferred.clear()
    routingTableEvents(this.node)?.removeEventListener('peer:add', this.onRoutingTableAdd)
    this.node.removeEventListener('peer:identify', this.onIdentify)
    this.node.removeEventListener('peer:discovery', this.onDiscovery)
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
    this.node.removeEventListener('connection:open', this.onConnectionOpen)
    this.node.removeEventListener('connection:close', this.onConnectionClose)
    clearInterval(this.dedupeTimer)
    clearTimeout(this.lookupTimer)
  }

  private get stopped (): boolean { return this.controller.signal.aborted }

  /** Dials `peer` at `addrs` unless connected, already dialling, or it failed just now. */
  dialPeer (peer: PeerId, addrs: Multiaddr[]): void {
    const id = peer.toString()
    // every address must name the peer, or libp2p cannot check it reached the right one
    addrs = addrs.flatMap((ma) => {
      const named = addrPeerId(ma)
      return named === id ? [ma] : named === undefined ? [ma.encapsulate(`/p2p/${id}`)] : []
    })
    if (this.stopped || id === this.node.peerId.toString() || addrs.length === 0) return
    if (this.node.getConnections(peer).length > 0 || this.dialing.has(id)) return
    const failed = this.failedAt.get(id)
    if (failed !== undefined && Date.now() - failed < PEER_DIAL_RETRY_MS) return
    if (id < this.node.peerId.toString()) {
      // Two members usually hear of each other at the same moment (each one's advertisement
      // reaches the other through the mesh), and if both dial, each pair ends up with two
      // connections: twice the gossip, and duplicates to close. The one with the smaller
      // id dials; the other waits, and dials only if no connection came.
      if (this.deferred.has(id)) return
      const timer = setTimeout(() => {
        this.deferred.delete(id)
        this.dialNow(peer, addrs)
      }, PEER_DIAL_DEFER_MS)
      timer.unref()
      this.deferred.set(id, timer)
      return
    }
    this.dialNow(peer, addrs)
  }

  private dialNow (peer: PeerId, addrs: Multiaddr[]): void {
    const id = peer.toString()
    if (this.stopped || this.node.getConnections(peer).length > 0 || this.dialing.has(id)) return
    this.dialing.add(id)
    this.log('dialling %s', id)
    const dial = linkedSignal([this.controller.signal], PEER_DIAL_TIMEOUT_MS)
    this.node.dial(addrs.slice(0, MAX_DIAL_ADDRS), { signal: dial.signal })
      .then(() => { this.failedAt.delete(id) })
      .catch((err: Error) => {
        this.failedAt.set(id, Date.now())
        this.log('could not dial %s: %s', id, err.message)
      })
      .finally(() => { dial.dispose(); this.dialing.delete(id) })
  }

  /** Dials the bootstrap addresses until connected; never throws, never blocks the caller. */
  bootstrap (): void {
    this.lookupBudget = SELF_LOOKUPS_PER_JOIN
    if (this.bootstrapping || this.bootstrapAddrs.length === 0 || this.stopped) return
    this.bootstrapping = true
    this.bootstrapLoop()
      .catch((err: Error) => { this.log.error('bootstrap failed: %s', err.message) })
      .finally(() => { this.bootstrapping = false })
  }

  private async bootstrapLoop (): Promise<void> {
    let delay = BOOTSTRAP_FIRST_DELAY_MS
    while (!this.stopped && this.node.getConnections().length === 0) {
      const dial = linkedSignal([this.controller.signal], BOOTSTRAP_DIAL_TIMEOUT_MS)
      const results = await Promise.allSettled(this.bootstrapAddrs.map(async (ma) => await this.node.dial(ma, { signal: dial.signal })))
      dial.dispose()
      if (results.some((r) => r.status === 'fulfilled')) return
      for (const r of results) {
        if (r.status === 'rejected') this.log('bootstrap dial failed: %s', (r.reason as Error)?.message)
      }
      await sleep(delay, this.controller.signal)
      delay = Math.min(delay * 2, BOOTSTRAP_MAX_DELAY_MS)
    }
  }

  private readonly onConnectionOpen = (evt: CustomEvent<Connection>): void => {
    // once both sides' upgrades settled; the sweep catches what this one leaves
    if (this.node.getConnections(evt.detail.remotePeer).length > 1) {
      setTimeout(() => { this.closeDuplicates(evt.detail.remotePeer) }, DUPLICATE_SETTLE_MS).unref()
    }
  }

  /**
   * A connection closed while another to the same member stays open (a duplicate closed, by
   * us or by the other side): gossipsub kept its streams on the closed one and opens new ones
   * only when told of a connection, which libp2p does after identify. So identify again.
   */
  private readonly onConnectionClose = (evt: CustomEvent<Connection>): void => {
    if (this.stopped) return
    const survivor = this.node.getConnections(evt.detail.remotePeer).find((c) => c.status === 'open')
    if (survivor === undefined) return
    const identifying = linkedSignal([this.controller.signal], IDENTIFY_AGAIN_TIMEOUT_MS)
    this.node.services.identify.identify(survivor, { signal: identifying.signal })
      .catch((err: Error) => { if (!this.stopped) this.log('identify again of %s failed: %s', evt.detail.remotePeer, err.message) })
      .finally(identifying.dispose)
  }

  /**
   * Closes the connections this agent dialled to a member with a smaller id (`peer`, or every
   * member) while one that member dialled is open here: the member with the smaller id dials
   * (see dialPeer), so its connection is the one both keep. Only the larger side closes, and
   * only once the smaller one's connection is open on its side: as the listener, it finishes
   * the handshake last, so the other side has it too and never finds itself without a
   * connection for a moment (which would drop us from its view). A connection carrying any
   * stream of ours (a command's output, a sync) is left for a later sweep.
   */
  closeDuplicates (peer?: PeerId): void {
    if (this.stopped) return
    const self = this.node.peerId.toString()
    const peers = peer === undefined ? this.node.getPeers() : [peer]
    for (const p of peers) {
      if (p.toString() > self) continue
      const conns = this.node.getConnections(p).filter((c) => c.status === 'open')
      if (conns.length < 2 || !conns.some((c) => c.direction === 'inbound')) continue
      for (const c of conns) {
        if (c.direction === 'inbound' || c.streams.some((st) => !housekeeping(st.protocol))) continue
        this.closeDuplicate(p, c)
      }
    }
    // A side that dialled one member twice (two dials raced: a bootstrap, a hello's member
    // list, a DHT query) while the other dialled nothing: the rule above never applies, on
    // either side. The dialler keeps its oldest and closes the others.
    for (const p of peers) {
      const mine = this.node.getConnections(p).filter((c) => c.status === 'open' && c.direction === 'outbound')
        .sort((a, b) => a.timeline.open - b.timeline.open)
      if (mine.length < 2 || this.node.getConnections(p).some((c) => c.status === 'open' && c.direction === 'inbound')) continue
      for (const c of mine.slice(1)) if (!c.streams.some((st) => !housekeeping(st.protocol))) this.closeDuplicate(p, c)
    }
  }

  private closeDuplicate (p: PeerId, c: Connection): void {
    this.log('closing a duplicate connection to %s', p)
    // a graceful close waits for the other side to end gossipsub's long-lived streams
    c.close({ signal: AbortSignal.timeout(DUPLICATE_CLOSE_MS) }).catch((err: Error) => { c.abort(err) })
  }

  private readonly onDisconnect = (): void => {
    // the last connection is gone: try the way we first came in
    if (this.node.getConnections().length === 0) this.bootstrap()
  }

  private readonly onIdentify = (evt: CustomEvent<{ protocols: string[] }>): void => {
    if (evt.detail.protocols.includes(DHT_PROTOCOL)) this.scheduleLookup()
  }

  private readonly onRoutingTableAdd = (): void => { this.scheduleLookup() }

  /**
   * A self-lookup a little later, and only if this agent still lacks members by then: the
   * hello of the first member reached lists the others, and gossip introduces the rest, so
   * the lookup is a fallback. Run at once, on every member of a grid that joined together,
   * each lookup dialled every member it found while they dialled each other: most pairs got
   * two connections, and closing them kept a 16-member grid busy for seconds.
   */
  private scheduleLookup (): void {
    if (this.stopped || this.lookupTimer !== undefined || this.lookupBudget <= 0) return
    this.lookupTimer = setTimeout(() => {
      this.lookupTimer = undefined
      if (this.lacksMembers()) this.lookupSelf()
    }, SELF_LOOKUP_DELAY_MS)
    this.lookupTimer.unref()
  }

  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    this.dialPeer(evt.detail.id, evt.detail.multiaddrs)
  }

  /**
   * One self-lookup at a time; a request during one runs another right after. Two per join
   * at most: without a budget every member looked itself up again at every identify, each
   * lookup querying (and dialling) every member: on a 16-member grid that joined at once,
   * 70 lookups in ten seconds.
   */
  private lookupSelf (): void {
    if (this.stopped) return
    if (this.lookupRunning) { this.lookupAgain = true; return }
    if (this.lookupBudget <= 0) return
    this.lookupBudget--
    this.lookupRunning = true
    this.runLookup()
      .catch((err: Error) => { if (!this.stopped) this.log('DHT self-lookup failed: %s', err.message) })
      .finally(() => {
        this.lookupRunning = false
        if (this.lookupAgain) { this.lookupAgain = false; this.lookupSelf() }
      })
  }

  private async runLookup (): Promise<void> {
    const lookup = linkedSignal([this.controller.signal], DHT_LOOKUP_TIMEOUT_MS)
    const key = this.node.peerId.toMultihash().bytes
    try {
      for await (const evt of this.node.services.dht.getClosestPeers(key, { signal: lookup.signal })) {
        if (evt.name === 'FINAL_PEER') this.dialPeer(evt.peer.id, evt.peer.multiaddrs)
        else if (evt.name === 'PEER_RESPONSE') for (const p of evt.closer) this.dialPeer(p.id, p.multiaddrs)
      }
    } finally {
      lookup.dispose()
    }
  }
}

/** Protocols libp2p runs by itself on every connection, which may be cut and opened again. */
function housekeeping (protocol: string | undefined): boolean {
  // '' is a stream still negotiating its protocol
  return protocol === undefined || protocol === '' || protocol === DHT_PROTOCOL || protocol === HELLO_PROTOCOL ||
    protocol.startsWith('/meshsub/') || protocol.startsWith('/floodsub/') || protocol.startsWith('/ipfs/')
}

/** kad-dht's routing table, when this version exposes it as an event target (not public API). */
function routingTableEvents (node: GridNode): EventTarget | undefined {
  const table = (node.services.dht as unknown as { routingTable?: unknown }).routingTable
  return table instanceof EventTarget ? table : undefined
}
