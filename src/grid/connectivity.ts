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
 */
import type { Logger, PeerId, PeerInfo } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { addrPeerId } from './addrs.js'
import {
  BOOTSTRAP_DIAL_TIMEOUT_MS, BOOTSTRAP_FIRST_DELAY_MS, BOOTSTRAP_MAX_DELAY_MS, DHT_PROTOCOL, MAX_DIAL_ADDRS,
  PEER_DIAL_RETRY_MS, PEER_DIAL_TIMEOUT_MS
} from './constants.js'
import type { GridNode } from './node.js'
import { sleep } from '../common/timeout.js'

/** How long one DHT self-lookup may take before it is abandoned. */
const DHT_LOOKUP_TIMEOUT_MS = 5_000

export class Connectivity {
  private readonly controller = new AbortController()
  private bootstrapping = false
  private readonly dialing = new Set<string>()
  private readonly failedAt = new Map<string, number>()
  private lookupRunning = false
  private lookupAgain = false

  constructor (
    private readonly node: GridNode,
    private readonly bootstrapAddrs: Multiaddr[],
    private readonly log: Logger
  ) {}

  start (): void {
    // kad-dht adds a peer to its routing table a little after identify (it queues, and may
    // ping it first); a lookup before that finds nothing. Its routing table says when.
    routingTableEvents(this.node)?.addEventListener('peer:add', this.onRoutingTableAdd)
    this.node.addEventListener('peer:identify', this.onIdentify)
    this.node.addEventListener('peer:discovery', this.onDiscovery)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    this.bootstrap()
  }

  stop (): void {
    this.controller.abort()
    routingTableEvents(this.node)?.removeEventListener('peer:add', this.onRoutingTableAdd)
    this.node.removeEventListener('peer:identify', this.onIdentify)
    this.node.removeEventListener('peer:discovery', this.onDiscovery)
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
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
    this.dialing.add(id)
    this.log('dialling %s', id)
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(PEER_DIAL_TIMEOUT_MS)])
    this.node.dial(addrs.slice(0, MAX_DIAL_ADDRS), { signal })
      .then(() => { this.failedAt.delete(id) })
      .catch((err: Error) => {
        this.failedAt.set(id, Date.now())
        this.log('could not dial %s: %s', id, err.message)
      })
      .finally(() => { this.dialing.delete(id) })
  }

  /** Dials the bootstrap addresses until connected; never throws, never blocks the caller. */
  bootstrap (): void {
    if (this.bootstrapping || this.bootstrapAddrs.length === 0 || this.stopped) return
    this.bootstrapping = true
    this.bootstrapLoop()
      .catch((err: Error) => { this.log.error('bootstrap failed: %s', err.message) })
      .finally(() => { this.bootstrapping = false })
  }

  private async bootstrapLoop (): Promise<void> {
    let delay = BOOTSTRAP_FIRST_DELAY_MS
    while (!this.stopped && this.node.getConnections().length === 0) {
      const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(BOOTSTRAP_DIAL_TIMEOUT_MS)])
      const results = await Promise.allSettled(this.bootstrapAddrs.map(async (ma) => await this.node.dial(ma, { signal })))
      if (results.some((r) => r.status === 'fulfilled')) return
      for (const r of results) {
        if (r.status === 'rejected') this.log('bootstrap dial failed: %s', (r.reason as Error)?.message)
      }
      await sleep(delay, this.controller.signal)
      delay = Math.min(delay * 2, BOOTSTRAP_MAX_DELAY_MS)
    }
  }

  private readonly onDisconnect = (): void => {
    // the last connection is gone: try the way we first came in
    if (this.node.getConnections().length === 0) this.bootstrap()
  }

  private readonly onIdentify = (evt: CustomEvent<{ protocols: string[] }>): void => {
    if (evt.detail.protocols.includes(DHT_PROTOCOL)) this.lookupSelf()
  }

  private readonly onRoutingTableAdd = (): void => { this.lookupSelf() }

  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    this.dialPeer(evt.detail.id, evt.detail.multiaddrs)
  }

  /** One self-lookup at a time; a request during one runs another right after. */
  private lookupSelf (): void {
    if (this.stopped) return
    if (this.lookupRunning) { this.lookupAgain = true; return }
    this.lookupRunning = true
    this.runLookup()
      .catch((err: Error) => { if (!this.stopped) this.log('DHT self-lookup failed: %s', err.message) })
      .finally(() => {
        this.lookupRunning = false
        if (this.lookupAgain) { this.lookupAgain = false; this.lookupSelf() }
      })
  }

  private async runLookup (): Promise<void> {
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(DHT_LOOKUP_TIMEOUT_MS)])
    const key = this.node.peerId.toMultihash().bytes
    for await (const evt of this.node.services.dht.getClosestPeers(key, { signal })) {
      if (evt.name === 'FINAL_PEER') this.dialPeer(evt.peer.id, evt.peer.multiaddrs)
      else if (evt.name === 'PEER_RESPONSE') for (const p of evt.closer) this.dialPeer(p.id, p.multiaddrs)
    }
  }
}

/** kad-dht's routing table, when this version exposes it as an event target (not public API). */
function routingTableEvents (node: GridNode): EventTarget | undefined {
  const table = (node.services.dht as unknown as { routingTable?: unknown }).routingTable
  return table instanceof EventTarget ? table : undefined
}
