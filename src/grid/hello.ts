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
 *
 * A second frame lists the other members the sender knows (peer id and addresses): a new
 * member learns the whole grid from the first member it reaches, in the same round trip, and
 * dials them all, rather than finding them one by one through the DHT and relayed gossip
 * (that took 10–20 s on a 16-member grid that joined at once). A receiver that predates the
 * list reads the first frame only.
 */
import type { Logger, PeerId, Stream, Connection } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { bad, obj, str, strArray } from '../common/validate.js'
import { parsePeerAd } from '../protocol/advert.js'
import { HELLO_MAX_FRAME_BYTES, HELLO_PROTOCOL, HELLO_TIMEOUT_MS, MAX_AD_ADDRS, MAX_ADDR_CHARS, MAX_HELLO_MEMBERS } from './constants.js'
import type { GridNode } from './node.js'
import { streamChannel } from './stream-channel.js'
import type { PeerAd } from './types.js'

/** A member as a hello lists it: enough to dial it. */
export interface HelloMember { peer: string, addrs: string[] }

export interface HelloHandlers {
  onAd: (ad: PeerAd, from: PeerId) => void
  onMembers: (members: HelloMember[], from: PeerId) => void
}

/** Checks the member list of a hello; every entry must name a valid peer id. */
export function parseHelloMembers (v: unknown): HelloMember[] {
  const m = obj(v, 'hello members')
  if (!Array.isArray(m.members)) bad('members is not a list')
  if (m.members.length > MAX_HELLO_MEMBERS) bad(`members has more than ${MAX_HELLO_MEMBERS} entries`)
  return m.members.map((e: unknown, i: number) => {
    const x = obj(e, `members[${i}]`)
    const peer = str(x.peer, `members[${i}].peer`, 128)
    try { peerIdFromString(peer) } catch { bad(`members[${i}].peer is not a peer id`) }
    return { peer, addrs: strArray(x.addrs, `members[${i}].addrs`, MAX_AD_ADDRS, MAX_ADDR_CHARS) }
  })
}

export async function serveHello (node: GridNode, handlers: HelloHandlers, log: Logger): Promise<void> {
  await node.handle(HELLO_PROTOCOL, (stream: Stream, connection: Connection) => {
    const from = connection.remotePeer
    const channel = streamChannel(stream, { maxFrameBytes: HELLO_MAX_FRAME_BYTES, log, remotePeer: from.toString() })
    const timer = setTimeout(() => { channel.destroy(new Error('hello timed out')) }, HELLO_TIMEOUT_MS)
    timer.unref()
    channel.recv()
      .then(async (msg) => {
        // the connection closed before the sender got to it (both sides stopping)
        if (msg === undefined) return
        const ad = parsePeerAd(msg)
        if (ad.peer !== from.toString()) throw new Error(`it names ${ad.peer}`)
        handlers.onAd(ad, from)
        const list = await channel.recv()
        if (list !== undefined) handlers.onMembers(parseHelloMembers(list), from)
        await channel.close()
      })
      .catch((err: Error) => {
        log('refused a hello from %s: %s', from, err.message)
        channel.destroy(err)
      })
      .finally(() => { clearTimeout(timer) })
  }, { maxInboundStreams: 4, maxOutboundStreams: 4 })
}

/**
 * Sends our advertisement over a new connection, then the members we know (the receiver and
 * ourselves left out); failures only cost speed.
 */
export function sendHello (connection: Connection, ad: PeerAd, members: () => HelloMember[], log: Logger): void {
  const peer = connection.remotePeer.toString()
  connection.newStream(HELLO_PROTOCOL, { signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) })
    .then(async (stream) => {
      const channel = streamChannel(stream, { maxFrameBytes: HELLO_MAX_FRAME_BYTES, log, remotePeer: peer })
      await channel.send(ad)
      const list = members().filter((m) => m.peer !== peer).slice(0, MAX_HELLO_MEMBERS)
      if (list.length > 0) await channel.send({ members: list })
      await channel.close()
    })
    .catch((err: Error) => { log('hello to %s failed: %s', peer, err.message) })
}
