/**
 * How a data plane connection starts, before any frame: the client sends MAGIC, the ticket
 * the sync stream gave it and its nonce; the server answers with its nonce, or closes the
 * connection without a word when it does not know the ticket. From then on both ends speak
 * sealed frames (cipher.ts), and the client's first one proves it holds the session key.
 */
import type { Socket } from 'node:net'
import { VgridError } from '../../common/errors.js'
import type { ReadRing } from '../../common/read-ring.js'
import { PLANE_NONCE_BYTES } from './cipher.js'

/** Version 2: records of frames (cipher.ts). A member of version 1 closes the connection, and the stream carries the bytes. */
export const PLANE_MAGIC = Buffer.from('vgp2')
export const PLANE_TICKET_BYTES = 16
export const CLIENT_HELLO_BYTES = PLANE_MAGIC.byteLength + PLANE_TICKET_BYTES + PLANE_NONCE_BYTES
export const SERVER_HELLO_BYTES = PLANE_NONCE_BYTES
/** Either end waits this long for the other's hello. */
export const PLANE_HELLO_TIMEOUT_MS = 5_000

/**
 * What `watch` hands over (it calls `done` with the hello's bytes; it returns how to stop
 * watching), or ERR_PEER_LOST when the socket closes or fails first, ERR_TIMEOUT after
 * `timeoutMs`. Both ends read a hello this way, from a socket's stream or from a ReadRing.
 */
async function awaitHello (socket: Socket, timeoutMs: number, watch: (done: (hello: Buffer) => void) => () => void): Promise<Buffer> {
  return await new Promise<Buffer>((resolve, reject) => {
    let unwatch: (() => void) | undefined
    let settled = false
    const finish = (err?: Error, value?: Buffer): void => {
      settled = true
      clearTimeout(timer)
      socket.off('close', onClose)
      socket.off('error', onError)
      unwatch?.()
      if (err !== undefined) reject(err)
      else resolve(value!)
    }
    const onClose = (): void => { finish(new VgridError('ERR_PEER_LOST', 'the data plane connection closed during its hello')) }
    const onError = (err: Error): void => { finish(new VgridError('ERR_PEER_LOST', `the data plane connection failed: ${err.message}`)) }
    const timer = setTimeout(() => { finish(new VgridError('ERR_TIMEOUT', `no data plane hello within ${timeoutMs} ms`)) }, timeoutMs)
    socket.once('close', onClose)
    socket.once('error', onError)
    const stop = watch((hello) => { finish(undefined, hello) })
    // the hello may have been there already: then it is over before `watch` returned
    if (settled) stop()
    else unwatch = stop
  })
}

/**
 * Exactly `n` bytes from the socket, then the socket back as it was (what came after them is
 * put back for the next reader).
 */
export async function readExactly (socket: Socket, n: number, timeoutMs: number): Promise<Buffer> {
  return await awaitHello(socket, timeoutMs, (done) => {
    const parts: Buffer[] = []
    let got = 0
    const onData = (d: Buffer): void => {
      parts.push(d)
      got += d.byteLength
      if (got < n) return
      const all = Buffer.concat(parts, got)
      socket.pause()
      if (got > n) socket.unshift(all.subarray(n))
      done(all.subarray(0, n))
    }
    socket.on('data', onData)
    socket.resume()
    return () => { socket.off('data', onData) }
  })
}

/** Exactly `n` bytes (copied) from a socket that reads into `ring`; what came after them stays there. */
export async function readHello (ring: ReadRing, socket: Socket, n: number, timeoutMs: number): Promise<Buffer> {
  return await awaitHello(socket, timeoutMs, (done) => {
    ring.consume((data) => {
      if (data.byteLength < n) return 0
      done(Buffer.from(data.subarray(0, n)))
      return n
    })
    return () => { ring.detach() }
  })
}
