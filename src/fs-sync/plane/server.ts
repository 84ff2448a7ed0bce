/**
 * The serving end of the data plane: one TCP listener per agent, beside libp2p's. A sync
 * stream that asks for the plane gets a grant (a port, a ticket and a session key, over the
 * stream: cipher.ts); a connection that shows the ticket and then seals its first frame with
 * that key is handed to the grant's handler as a FrameChannel. Everything else is closed
 * without an answer: an unknown ticket, a bad tag, a hello that does not come in time, a
 * connection past the grant's cap or past the listener's cap of connections still in hello.
 * A grant ends with the stream that asked for it, and its connections with it.
 */
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { socketChannel, type FrameChannel } from '../../common/channel.js'
import { createLogger } from '../../common/log.js'
import { frameCipher, newPlaneKey, newPlaneNonce, PLANE_TAG_BYTES } from './cipher.js'
import { CLIENT_HELLO_BYTES, PLANE_HELLO_TIMEOUT_MS, PLANE_MAGIC, PLANE_TICKET_BYTES, readExactly } from './hello.js'

const log = createLogger('sync')

/** Connections one grant may open (the puller's parallel connections). */
export const MAX_PLANE_CONNECTIONS = 8
/** Connections not yet past their hello, all grants together; more are closed at once. */
export const MAX_PLANE_HELLOS = 64

export interface PlaneGrant {
  port: number
  ticket: Uint8Array
  key: Uint8Array
}

interface Grant {
  key: Buffer
  serve: (channel: FrameChannel) => Promise<void>
  maxFrameBytes: number
  live: Set<net.Socket>
}

export class PlaneServer {
  private readonly grants = new Map<string, Grant>()
  private hellos = 0

  private constructor (private readonly server: net.Server) {
    server.on('connection', (socket) => { this.accept(socket) })
  }

  /** Listens on `host` (an address of this machine), on a port the system picks. */
  static async listen (host: string): Promise<PlaneServer> {
    const server = net.createServer({ noDelay: true })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host, port: 0 }, () => { server.off('error', reject); resolve() })
    })
    server.on('error', (err) => { log.warn('the data plane listener failed', err) })
    return new PlaneServer(server)
  }

  get port (): number {
    return (this.server.address() as net.AddressInfo).port
  }

  /**
   * A grant for one sync stream: `serve` runs for each connection that opens it.
   * `live()` counts its connections; `end()` closes them and refuses new ones.
   */
  grant (serve: (channel: FrameChannel) => Promise<void>, maxFrameBytes: number): { offer: PlaneGrant, live: () => number, end: () => void } {
    const ticket = randomBytes(PLANE_TICKET_BYTES)
    const key = newPlaneKey()
    const id = ticket.toString('hex')
    const g: Grant = { key, serve, maxFrameBytes, live: new Set() }
    this.grants.set(id, g)
    return {
      offer: { port: this.port, ticket, key },
      live: () => g.live.size,
      end: () => {
        this.grants.delete(id)
        for (const s of g.live) s.destroy()
      }
    }
  }

  /** Grants open now (for tests: a stream's end takes its grant with it). */
  get grantCount (): number {
    return this.grants.size
  }

  async close (): Promise<void> {
    for (const g of this.grants.values()) for (const s of g.live) s.destroy()
    this.grants.clear()
    await new Promise<void>((resolve) => { this.server.close(() => { resolve() }) })
  }

  private accept (socket: net.Socket): void {
    socket.on('error', () => {})
    if (this.hellos >= MAX_PLANE_HELLOS) {
      socket.destroy()
      return
    }
    this.hellos++
    let counted = true
    const helloDone = (): void => {
      if (counted) { counted = false; this.hellos-- }
    }
    readExactly(socket, CLIENT_HELLO_BYTES, PLANE_HELLO_TIMEOUT_MS).then((hello) => {
      helloDone()
      const magic = hello.subarray(0, PLANE_MAGIC.byteLength)
      const ticket = hello.subarray(PLANE_MAGIC.byteLength, PLANE_MAGIC.byteLength + PLANE_TICKET_BYTES)
      const clientNonce = hello.subarray(PLANE_MAGIC.byteLength + PLANE_TICKET_BYTES)
      const g = magic.equals(PLANE_MAGIC) ? this.grants.get(ticket.toString('hex')) : undefined
      if (g === undefined || g.live.size >= MAX_PLANE_CONNECTIONS) {
        socket.destroy()
        return
      }
      g.live.add(socket)
      socket.once('close', () => { g.live.delete(socket) })
      const serverNonce = newPlaneNonce()
      socket.write(serverNonce)
      const channel = socketChannel(socket, g.maxFrameBytes + PLANE_TAG_BYTES, frameCipher(g.key, clientNonce, serverNonce, false))
      socket.resume()
      g.serve(channel).catch((err: unknown) => {
        log.debug('a data plane connection failed', err)
        channel.destroy(err as Error)
      })
    }, () => {
      helloDone()
      socket.destroy()
    })
  }
}
