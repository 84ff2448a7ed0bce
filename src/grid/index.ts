/**
 * The grid: this agent's libp2p node inside a private network (swarm key), membership,
 * resource advertisements gossiped on `vgrid/resources/1`, and the view of all members.
 * It knows nothing of processes or files: the agent hands it a function that describes this
 * machine, and talks to other members through FrameChannels opened on named protocols.
 *
 * CONTRACT (implemented in this folder):
 *
 *   createGrid(init: GridInit): Promise<Grid>   // started and listening when it resolves
 *
 *   identity / swarm key / join token helpers:
 *   loadOrCreateIdentity(home): Promise<PrivateKey>       // $home/identity.key, mode 0600
 *   loadSwarmKey(home) / createSwarmKey(home) / writeSwarmKey(home, key)   // $home/swarm.key
 *   encodeJoinToken({ swarmKey, addrs }) / decodeJoinToken(token)          // ERR_BAD_TOKEN
 */
import type { FrameChannel } from '../common/channel.js'
import type { PeerAd, PeerView } from './types.js'

export type { GpuInfo, Resources, Offer, Load, PeerAd, PeerView, AgentStatus } from './types.js'

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
}

export type ChannelHandler = (channel: FrameChannel, remotePeer: string) => Promise<void> | void

export interface Grid {
  readonly peerId: string
  /** Addresses others can dial, each ending in /p2p/<peerId>. */
  addrs (): string[]
  /** Every known member, this agent included, freshest first. */
  view (): PeerView[]
  /** Called whenever a member joins, changes or leaves the view. Returns an unsubscribe. */
  onViewChange (cb: () => void): () => void
  /** Publishes this agent's advertisement now (load changed). */
  publishNow (): void
  /** Serves a protocol: every inbound stream becomes a FrameChannel with the given frame cap. */
  handle (protocol: string, handler: ChannelHandler, opts?: { maxFrameBytes?: number }): Promise<void>
  /** Opens a stream to a member. Rejects with ERR_PEER_LOST when it cannot be reached. */
  open (peer: string, protocol: string, opts?: { signal?: AbortSignal, maxFrameBytes?: number }): Promise<FrameChannel>
  connectionCount (): number
  /** Publishes a goodbye, then stops the node. */
  stop (): Promise<void>
}
