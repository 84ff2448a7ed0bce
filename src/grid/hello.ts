/**
 * Hello: when a connection opens, each side sends the other its advertisement straight away
 * on `/vgrid/hello/1.0.0` (one frame, then the stream closes), without waiting for identify.
 *
 * Gossip alone is slow to introduce new neighbours: our publish reaches a peer only once
 * gossipsub has its own outbound stream to it, which it opens after identify, one peer at a
 * time, and a publish before that is dropped (gossipsub's sendRpc: "no open stream"); the
 * next periodic one is up to a second away. The hello makes the view follow the connection within one round trip. It is
 * as trustworthy as a signed gossip message: Noise authenticated the peer at the other end of
 * the stream, and the ad must name that peer.
 */
import type { Logger, PeerId, Stream, Connection } from '@libp2p/interface'
import { parsePeerAd } from './advert.js'
import { HELLO_PROTOCOL, HELLO_TIMEOUT_MS, MAX_ADVERT_BYTES } from './constants.js'
import type { GridNode } from './node.js'
import { streamChannel } from './stream-channel.js'
import type { PeerAd } from './types.js'

export async function serveHello (node: GridNode, onAd: (ad: PeerAd, from: PeerId) => void, log: Logger): Promise<void> {
  await node.handle(HELLO_PROTOCOL, (stream: Stream, connection: Connection) => {
    const from = connection.remotePeer
    const channel = streamChannel(stream, { maxFrameBytes: MAX_ADVERT_BYTES, log, remotePeer: from.toString() })
    const timer = setTimeout(() => { channel.destroy(new Error('hello timed out')) }, HELLO_TIMEOUT_MS)
    timer.unref()
    channel.recv()
      .then(async (msg) => {
        // the connection closed before the sender got to it (both sides stopping)
        if (msg === undefined) return
        const ad = parsePeerAd(msg)
        if (ad.peer !== from.toString()) throw new Error(`it names ${ad.peer}`)
        onAd(ad, from)
        await channel.close()
      })
      .catch((err: Error) => {
        log('refused a hello from %s: %s', from, err.message)
        channel.destroy(err)
      })
      .finally(() => { clearTimeout(timer) })
  }, { maxInboundStreams: 4, maxOutboundStreams: 4 })
}

/** Sends our advertisement over a new connection; failures only cost speed. */
export function sendHello (connection: Connection, ad: PeerAd, log: Logger): void {
  const peer = connection.remotePeer.toString()
  connection.newStream(HELLO_PROTOCOL, { signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) })
    .then(async (stream) => {
      const channel = streamChannel(stream, { maxFrameBytes: MAX_ADVERT_BYTES, log, remotePeer: peer })
      await channel.send(ad)
      await channel.close()
    })
    .catch((err: Error) => { log('hello to %s failed: %s', peer, err.message) })
}
