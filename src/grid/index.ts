/**
 * The grid: this agent's libp2p node inside a private network (swarm key), membership,
 * resource advertisements gossiped on `vgrid/resources/1`, and the view of all members.
 * It knows nothing of processes or files: the agent hands it a function that describes this
 * machine, and talks to other members through FrameChannels opened on named protocols.
 * Identity, swarm key and join token helpers live here too: they are what an agent needs to
 * create a grid or join one.
 */
import type { FrameChannel } from '../common/channel.js'
import type { DepartedMember, PeerAd, PeerView } from './types.js'

export type { GpuInfo, GpuUse, Resources, Offer, Load, PeerAd, PeerView, DepartedMember, AgentStatus } from './types.js'
export { createGrid } from './create-grid.js'
export { loadOrCreateIdentity } from './identity.js'
export { createSwarmKey, loadSwarmKey, writeSwarmKey } from './swarm-key.js'
export { encodeJoinToken, decodeJoinToken, type JoinInfo } from './join-token.js'
export { tokenAddrs, parseMultiaddr, tcpHost } from './addrs.js'
export { parsePeerAd } from '../protocol/advert.js'
export { ADVERT_TOPIC, ADVERT_INTERVAL_MS, VIEW_EXPIRY_MS, DEPARTED_MEMORY_MS, MAX_ADVERT_BYTES, IDENTITY_FILE, SWARM_KEY_FILE, advertIntervalMs, memberExpiryMs } from './constants.js'

export interface GridInit {
  /** libp2p private key (Ed25519), persisted by the agent. */
  privateKey: import('@libp2p/interface').PrivateKey
  /** The 95-byte libp2p swarm key file contents (`/key/swarm/psk/1.0.0/` …). */
  swarmKey: Uint8Array
  listen: string[]
  /** Multiaddrs (with /p2p/ID) to dial at start: from --peer or a join token. */
  bootstrap: string[]
  version: string
  startedAt: number
  /** Describes this machine now; called for every advertisement. */
  describe: () => Pick<PeerAd, 'resources' | 'offer' | 'load'>
  /**
   * What the owner should read in the agent's log: a member that vanished, fell silent or is
   * graylisted. Defaults to the grid's debug log (DEBUG=vgrid:grid).
   */
  onWarning?: (msg: string) => void
  /**
   * How often this member refreshes its advertisement, in place of advertIntervalMs (which
   * follows the grid's size). For tests that must tell an immediate publish from a periodic
   * one without timing it.
   */
  advertEveryMs?: number
}

export type ChannelHandler = (channel: FrameChannel, remotePeer: string) => Promise<void> | void

export interface Grid {
  readonly peerId: string
  /** Addresses others can dial, each ending in /p2p/<peerId>. */
  addrs (): string[]
  /** Every known member, this agent included, freshest first. */
  view (): PeerView[]
  /** Members that left the view lately (DEPARTED_MEMORY_MS) and are not back, the latest first. */
  departed (): DepartedMember[]
  /** Called whenever a member joins, changes or leaves the view. Returns an unsubscribe. */
  onViewChange (cb: () => void): () => void
  /** Publishes this agent's advertisement now (load changed). */
  publishNow (): void
  /** Serves a protocol: every inbound stream becomes a FrameChannel with the given frame cap. */
  handle (protocol: string, handler: ChannelHandler, opts?: { maxFrameBytes?: number }): Promise<void>
  /** Opens a stream to a member. Rejects with ERR_PEER_LOST when it cannot be reached. */
  open (peer: string, protocol: string, opts?: { signal?: AbortSignal, maxFrameBytes?: number }): Promise<FrameChannel>
  /** Open libp2p connections (two peers dialling each other at once may share two). */
  connectionCount (): number
  /** Peer ids this agent has at least one open connection to. */
  connectedPeers (): string[]
  /** The IP address an open TCP connection to this member reaches it at (the data plane dials it). */
  remoteHost (peer: string): string | undefined
  /** Publishes a goodbye, then stops the node. */
  stop (): Promise<void>
}
