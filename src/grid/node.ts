/**
 * The libp2p node of an agent: TCP + Noise + Yamux, closed by the grid's swarm key (bound into
 * the Noise handshake: swarm-key.ts), with identify, ping, a private Kademlia DHT and
 * gossipsub. Only this file knows how the stack is assembled.
 */
import '../common/polyfill.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, type Identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { VgridError } from '../common/errors.js'
import { parseMultiaddr } from './addrs.js'
import { swarmPrologue } from './swarm-key.js'
import { PRIVATE_GRID_SCORE_PARAMS, PRIVATE_GRID_SCORE_THRESHOLDS } from './gossip-params.js'
import { DHT_PROTOCOL, PING_MAX_STREAMS, PING_MIN_TIMEOUT_MS, STREAM_READ_BUFFER_BYTES, STREAM_WINDOW_BYTES, YAMUX_MAX_MESSAGE_BYTES } from './constants.js'

export interface GridServices extends Record<string, unknown> {
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
}

export type GridNode = Libp2p<GridServices>

export interface NodeInit {
  privateKey: PrivateKey
  swarmKey: Uint8Array
  listen: string[]
  version: string
}

/**
 * The seen-cache key gossipsub checks before a message's signature: its signature, which under
 * StrictSign covers author, sequence number, topic and data. A message is cached under it
 * only once it passed validation, so a forged copy cannot hide the real one.
 */
export function fastMessageId (msg: { signature?: Uint8Array }): string {
  const sig = msg.signature
  // unsigned ones fail validation, so nothing is ever cached under this key
  if (sig === undefined || sig.byteLength === 0) return 'unsigned'
  return Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength).toString('base64')
}

/** Creates and starts the node; a listen address that cannot be used is a clear VgridError. */
export async function startNode (init: NodeInit): Promise<GridNode> {
  for (const addr of init.listen) {
    if (parseMultiaddr(addr) === undefined) {
      throw new VgridError('ERR_BAD_ARGUMENT', `${JSON.stringify(addr)} is not a listen address`, 'use a multiaddr such as /ip4/0.0.0.0/tcp/7321')
    }
  }
  let node: GridNode
  try {
    node = await createLibp2p<GridServices>({
      start: false,
      privateKey: init.privateKey,
      nodeInfo: { userAgent: `vgrid/${init.version}` },
      addresses: { listen: init.listen },
      transports: [tcp()],
      // The swarm key is in the handshake's prologue, not in a private network (pnet): a
      // peer without it fails the handshake (its first message from us does not decrypt),
      // before any protocol runs on the connection. pnet's second cipher (xsalsa20) on every
      // byte held one stream to 131 MB/s on a 2-core machine; without it, 459 MB/s.
      connectionEncrypters: [noise({ prologueBytes: swarmPrologue(init.swarmKey) })],
      streamMuxers: [yamux({
        maxMessageSize: YAMUX_MAX_MESSAGE_BYTES,
        streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES, maxReadBufferLength: STREAM_READ_BUFFER_BYTES }
      })],
      // The monitor pings every connection and aborts it when a ping fails. Its default
      // timeout (adaptive, from 5 s) cut live connections between agents that were only slow:
      // sixteen agents starting at once on two cores dropped and re-joined members. Silence
      // past memberExpiryMs drops a member from the view; the ping cuts a frozen member's
      // connection within ~20 s, which matters in a large grid where the refresh is slow.
      connectionMonitor: { pingTimeout: { minTimeout: PING_MIN_TIMEOUT_MS } },
      connectionManager: {
        // every member of a lab grid may sit behind one address (a NAT, or the tests on
        // 127.0.0.1); libp2p's default of 5 new connections per host per second is for the
        // public internet, and unknown hosts cannot pass the handshake anyway
        inboundConnectionThreshold: 100,
        maxIncomingPendingConnections: 64
      },
      services: {
        identify: identify(),
        // libp2p's connection monitor pings every connection every 10 s and kad-dht pings
        // routing table contacts, both on this protocol; with ping's default of one outbound
        // stream per connection the second fails, and the monitor takes any failure for a
        // dead peer and aborts the connection (221 aborts in 20 s on a 16-member grid)
        ping: ping({ maxOutboundStreams: PING_MAX_STREAMS, maxInboundStreams: PING_MAX_STREAMS }),
        dht: kadDHT({
          protocol: DHT_PROTOCOL,
          clientMode: false,
          // the default mapper drops private and loopback addresses: all a LAN grid has
          peerInfoMapper: passthroughMapper,
          // the first query otherwise waits a second for a self-query that finds nothing
          initialQuerySelfInterval: 0,
          // a lone first agent must not hang in queries until their timeout
          allowQueryWithZeroPeers: true
        }),
        pubsub: gossipsub({
          // a lone agent publishes every second to nobody: that is normal, not an error
          allowPublishToZeroTopicPeers: true,
          // the topic carries only signed advertisements; we check the signer is the subject
          globalSignaturePolicy: 'StrictSign',
          // each advertisement reaches a member once from its author and once more from every
          // other mesh member; without this, each copy's signature is checked before it is
          // known to be a copy (a tenth of an agent's time while 50 runs start)
          fastMsgIdFn: fastMessageId,
          // a private grid: see gossip-params.ts for each choice
          scoreParams: PRIVATE_GRID_SCORE_PARAMS,
          scoreThresholds: PRIVATE_GRID_SCORE_THRESHOLDS
        })
      }
    })
  } catch (err) {
    throw new VgridError('ERR_INTERNAL', `could not create the libp2p node: ${(err as Error).message}`)
  }
  try {
    await node.start()
  } catch (err) {
    try { await node.stop() } catch {}
    throw listenError(err as Error, init.listen)
  }
  return node
}

/** libp2p reports every listen failure as one UnsupportedListenAddressesError with the text. */
function listenError (err: Error, listen: string[]): Error {
  const text = String(err?.message ?? err)
  if (err?.name !== 'UnsupportedListenAddressesError' && !/EADDRINUSE|EADDRNOTAVAIL|EACCES/.test(text)) return err
  const failing = listen.find((a) => text.includes(a)) ?? listen.join(', ')
  const port = /\/tcp\/(\d+)/.exec(failing)?.[1]
  if (/EADDRINUSE/.test(text)) {
    return new VgridError('ERR_PORT_IN_USE', `port ${port ?? '?'} is already in use (listen address ${failing})`,
      'another agent may be running; stop it, or choose another address with --listen /ip4/0.0.0.0/tcp/PORT')
  }
  if (/EACCES/.test(text)) {
    return new VgridError('ERR_BAD_ARGUMENT', `not allowed to listen on ${failing} (ports below 1024 need privileges)`,
      'choose another address with --listen /ip4/0.0.0.0/tcp/PORT')
  }
  // the text holds a stack per address; the system error is the line naming an errno code
  const reason = /\b(E[A-Z]{3,}\b[^\n]*)/.exec(text)?.[1] ?? 'unknown error'
  return new VgridError('ERR_BAD_ARGUMENT', `cannot listen on ${failing}: ${reason}`,
    'is that an address of this machine? choose another with --listen /ip4/0.0.0.0/tcp/PORT')
}
