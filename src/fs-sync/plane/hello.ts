/**
 * How a data plane connection starts, before any frame: the client sends MAGIC, the ticket
 * the sync stream gave it and its nonce; the server answers with its nonce, or closes the
 * connection without a word when it does not know the ticket. From then on both ends speak
 * sealed frames (cipher.ts), and the client's first one proves it holds the session key.
 */
import type { Socket } from 'node:net'
import { VgridError } from '../../common/errors.js'
import { PLANE_NONCE_BYTES } from './cipher.js'

/** Version 2: records of frames (cipher.ts). A member of version 1 closes the connection, and the stream carries the bytes. */
export const PLANE_MAGIC = Buffer.from('vgp2')
export const PLANE_TICKET_BYTES = 16
export const CLIENT_HELLO_BYTES = PLANE_MAGIC.byteLength + PLANE_TICKET_BYTES + PLANE_NONCE_BYTES
export const SERVER_HELLO_BYTES = PLANE_NONCE_BYTES
/** Either end waits this long for the other's hello. */
export const PLANE_HELLO_TIMEOUT_MS = 5_000

/**
 * Exactly `n` bytes from the socket, then the socket back as it was (what came after them is
 * put back for the next reader). Ends with ERR_PEER_LOST when the socket closes first, and
 * ERR_TIMEOUT after `timeoutMs`.
 */
export async function readExactly (socket: Socket, n: number, timeoutMs: number): Promise<Buffer> {
  return await new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = []
    let got = 0
    const done = (err?: Error, value?: Buffer): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.off('error', onError)
      if (err !== undefined) reject(err)
      else resolve(value!)
    }
    const onData = (d: Buffer): void => {
      parts.push(d)
      got += d.byteLength
      if (got < n) return
      const all = Buffer.concat(parts, got)
      socket.pause()
      if (got > n) socket.unshift(all.subarray(n))
      done(undefined, all.subarray(0, n))
    }
    const onClose = (): void => { done(new VgridError('ERR_PEER_LOST', 'the data plane connection closed during its hello')) }
    const onError = (err: Error): void => { done(new VgridError('ERR_PEER_LOST', `the data plane connection failed: ${err.message}`)) }
    const timer = setTimeout(() => { done(new VgridError('ERR_TIMEOUT', `no data plane hello within ${timeoutMs} ms`)) }, timeoutMs)
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.once('error', onError)
    socket.resume()
  })
}
