/**
 * The dialling end of the data plane: a connection to one of the ports a sync stream's grant
 * named, on the host that member's libp2p connection comes from, sealed with the grant's key.
 */
import net from 'node:net'
import { decodeBody, socketChannel, type FrameChannel } from '../../common/channel.js'
import { decodeBlobReply } from '../../protocol/sync.js'
import { VgridError } from '../../common/errors.js'
import { frameCipher, newPlaneNonce, planeRecordCap } from './cipher.js'
import { PLANE_HELLO_TIMEOUT_MS, PLANE_MAGIC, SERVER_HELLO_BYTES, readHello } from './hello.js'
import { ReadRing } from '../../common/read-ring.js'
import type { PlaneGrant } from './server.js'

/** A connection not made in this long is given up (a firewall that drops it): the stream carries the bytes. */
export const PLANE_CONNECT_TIMEOUT_MS = 3_000

export async function dialPlane (host: string, port: number, grant: PlaneGrant, maxFrameBytes: number, signal?: AbortSignal): Promise<FrameChannel> {
  signal?.throwIfAborted()
  // Reads land in one buffer of ours, where each sealed record is opened in place (read-ring.ts).
  const ring = new ReadRing()
  const socket = net.connect({ host, port, noDelay: true, onread: ring.onread })
  socket.on('error', () => {})
  const onAbort = (): void => { socket.destroy() }
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new VgridError('ERR_TIMEOUT', `no data plane connection to ${host}:${port} within ${PLANE_CONNECT_TIMEOUT_MS} ms`)) }, PLANE_CONNECT_TIMEOUT_MS)
      socket.once('connect', () => { clearTimeout(timer); resolve() })
      socket.once('close', () => { clearTimeout(timer); reject(new VgridError('ERR_PEER_LOST', `the data plane at ${host}:${port} refused the connection`)) })
    })
    const clientNonce = newPlaneNonce()
    socket.write(Buffer.concat([PLANE_MAGIC, grant.ticket, clientNonce]))
    const serverNonce = await readHello(ring, socket, SERVER_HELLO_BYTES, PLANE_HELLO_TIMEOUT_MS)
    // nearly every frame that comes back is a blob: read those without cborg
    const channel = socketChannel(socket, planeRecordCap(maxFrameBytes), frameCipher(grant.key, clientNonce, serverNonce, true), (body) => decodeBlobReply(body) ?? decodeBody(body), ring)
    return channel
  } catch (err) {
    socket.destroy()
    throw err
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}
