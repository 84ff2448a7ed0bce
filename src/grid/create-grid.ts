/**
 * createGrid: starts this agent's node and wires membership, connectivity and protocol
 * channels into the Grid the agent uses.
 */
import type { Logger, Stream, Connection } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { MAX_FRAME_BYTES, type FrameChannel } from '../common/channel.js'
import { VgridError } from '../common/errors.js'
import { linkedSignal } from '../common/abort.js'
import { addrPeerId, advertAddrs, dialableAddrs, parseMultiaddr, tcpHost } from './addrs.js'
import { MAX_DIAL_ADDRS, MAX_PROTOCOL_STREAMS, OPEN_TIMEOUT_MS, OWN_ADDRS_TTL_MS } from './constants.js'
import { Connectivity } from './connectivity.js'
import { Membership } from './membership.js'
import { startNode, type GridNode } from './node.js'
import { streamChannel } from './stream-channel.js'
import { MemberView } from './view.js'
import type { ChannelHandler, Grid, GridInit } from './index.js'

export async function createGrid (init: GridInit): Promise<Grid> {
  const bootstrap = init.bootstrap.map((a) => {
    const ma = parseMultiaddr(a)
    if (ma === undefined) {
      throw new VgridError('ERR_BAD_ARGUMENT', `${JSON.stringify(a)} is not a peer address`,
        'give a multiaddr such as /ip4/10.0.0.5/tcp/7321/p2p/12D3KooW…')
    }
    return ma
  })
  const node = await startNode(init)
  const log = node.logger.forComponent('vgrid:grid')
  const peerId = node.peerId.toString()
  // a remembered member list or a --peer may name this very agent: dialling it only fails
  const others = bootstrap.filter((ma) => addrPeerId(ma) !== peerId)
  const view = new MemberView(peerId, undefined, undefined, (err) => { log.error('a view listener threw: %s', (err as Error)?.message ?? err) })
  // too few: a lone agent or one that reached only its bootstrap peer may be in a partition
  const lacksMembers = (): boolean => view.size <= 2 ||
    view.snapshot().some((p) => !p.self && node.getConnections(peerIdFromString(p.peer)).length === 0)
  const connectivity = new Connectivity(node, others, log, lacksMembers)
  // Asked for on every advertisement, and a claim's advertisement lies near a command's start.
  let own: { at: number, addrs: string[] } | undefined
  node.addEventListener('self:peer:update', () => { own = undefined })
  const addrs = (): string[] => {
    const now = performance.now()
    if (own === undefined || now - own.at > OWN_ADDRS_TTL_MS) own = { at: now, addrs: node.getMultiaddrs().map((ma) => ma.toString()) }
    return [...own.addrs]
  }
  const membership = new Membership(node, view, connectivity, {
    startedAt: init.startedAt,
    version: init.version,
    describe: init.describe,
    addrs: () => advertAddrs(addrs()),
    warn: init.onWarning ?? ((msg) => { log.error(msg) }),
    ...(init.advertEveryMs !== undefined ? { everyMs: init.advertEveryMs } : {})
  }, log)

  try {
    await membership.start()
  } catch (err) {
    try { await node.stop() } catch {}
    throw err
  }
  connectivity.start()

  let stopping: Promise<void> | undefined

  return {
    peerId,
    addrs,
    // This agent's own entry is live; the others are as last heard.
    view: () => view.snapshot().map((p) => p.self ? { ...membership.currentSelf(), lastSeenMs: 0, self: true } : p),
    departed: () => view.departed(),
    onViewChange: (cb) => view.onChange(cb),
    publishNow: () => { membership.publishNow() },
    connectionCount: () => node.getConnections().length,
    connectedPeers: () => node.getPeers().map((p) => p.toString()),
    remoteHost: (peer) => {
      for (const c of node.getConnections()) {
        if (c.remotePeer.toString() !== peer || c.status !== 'open') continue
        const host = tcpHost(c.remoteAddr)
        if (host !== undefined) return host
      }
      return undefined
    },

    async handle (protocol, handler, opts) {
      const maxFrameBytes = opts?.maxFrameBytes ?? MAX_FRAME_BYTES
      await node.handle(protocol, (stream, connection) => {
        serveStream(stream, connection, handler, maxFrameBytes, log)
      }, { maxInboundStreams: MAX_PROTOCOL_STREAMS, maxOutboundStreams: MAX_PROTOCOL_STREAMS })
    },

    async open (peer, protocol, opts) {
      return await openChannel(node, view, log, peer, protocol, opts?.signal, opts?.maxFrameBytes ?? MAX_FRAME_BYTES, stopping !== undefined)
    },

    async stop () {
      stopping ??= (async () => {
        connectivity.stop()
        await membership.leave()
        await node.stop()
      })()
      await stopping
    }
  }
}

/** Runs a handler on an inbound stream; a handler that throws resets its stream only. */
function serveStream (stream: Stream, connection: Connection, handler: ChannelHandler, maxFrameBytes: number, log: Logger): void {
  const remotePeer = connection.remotePeer.toString()
  const channel = streamChannel(stream, { maxFrameBytes, log, remotePeer })
  Promise.resolve()
    .then(async () => { await handler(channel, remotePeer) })
    .catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err))
      log.error('handler for %s from %s threw: %s', stream.protocol, remotePeer, e.message)
      channel.destroy(e)
    })
}

async function openChannel (
  node: GridNode, view: MemberView, log: Logger, peer: string, protocol: string,
  signal: AbortSignal | undefined, maxFrameBytes: number, stopping: boolean
): Promise<FrameChannel> {
  signal?.throwIfAborted()
  if (stopping) throw new VgridError('ERR_PEER_LOST', 'this agent is stopping')
  let pid
  try {
    pid = peerIdFromString(peer)
  } catch {
    throw new VgridError('ERR_NO_SUCH_PEER', `${JSON.stringify(peer.slice(0, 80))} is not a peer id`)
  }
  if (peer === node.peerId.toString()) {
    throw new VgridError('ERR_BAD_ARGUMENT', 'cannot open a stream to this agent itself', 'run local work in-process')
  }
  const ad = view.get(peer)
  const connected = node.getConnections(pid).length > 0
  if (!connected && ad === undefined && !(await node.peerStore.has(pid))) {
    throw new VgridError('ERR_NO_SUCH_PEER', `no member ${peer} is known in this grid`, 'see the members with `vgrid peers`')
  }
  // Callers pass long-lived signals (the agent's shutdown): see common/abort.ts.
  const opening = linkedSignal([signal], OPEN_TIMEOUT_MS)
  const sig = opening.signal
  let stream: Stream
  try {
    if (!connected && ad !== undefined) {
      const addrs = dialableAddrs(ad.addrs, peer, MAX_DIAL_ADDRS)
      if (addrs.length > 0) await node.dial(addrs, { signal: sig })
    }
    stream = await node.dialProtocol(pid, protocol, { signal: sig, maxOutboundStreams: MAX_PROTOCOL_STREAMS })
  } catch (err) {
    if (signal?.aborted === true) throw signal.reason
    const e = err as Error
    const host = ad?.resources.host === undefined ? '' : ` (${ad.resources.host})`
    if (e.name === 'UnsupportedProtocolError') {
      throw new VgridError('ERR_PEER_LOST', `member ${peer.slice(-8)}${host} does not serve ${protocol}`, 'is it running another version of vgrid?')
    }
    const why = sig.aborted ? `no answer within ${OPEN_TIMEOUT_MS / 1000} s` : e.message
    throw new VgridError('ERR_PEER_LOST', `cannot reach member ${peer.slice(-8)}${host}: ${why}`)
  } finally {
    opening.dispose()
  }
  log('opened %s to %s', protocol, peer)
  return streamChannel(stream, { maxFrameBytes, log, remotePeer: peer })
}
