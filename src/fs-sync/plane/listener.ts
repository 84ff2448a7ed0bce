/**
 * One data plane listener: the TCP port, the hello, and the wants of the connections it let
 * in. It runs in a thread of its own (serve-worker.ts) when the agent runs built, and on the
 * main thread otherwise; either way the export stays on the main thread, which only says
 * where each asked-for blob is (`resolve`): the reads from the files, the sealing and the
 * socket's bytes happen here.
 *
 * Closed without an answer: an unknown ticket, a bad tag, a hello that does not come in
 * time, a connection past the grant's cap or past the listener's cap of connections still in
 * hello.
 */
import net from 'node:net'
import { socketChannel, type SocketChannel } from '../../common/channel.js'
import { VgridError, toWire } from '../../common/errors.js'
import { withTimeout } from '../../common/timeout.js'
import { blobReplyPieces, parseSyncRequest, SYNC_IDLE_TIMEOUT_MS } from '../../protocol/sync.js'
import { closeQuietly, readSource } from '../read-chunk.js'
import { HASH_BYTES, type ChunkSource } from '../types.js'
import { frameCipher, newPlaneNonce, planeRecordCap } from './cipher.js'
import { CLIENT_HELLO_BYTES, PLANE_HELLO_TIMEOUT_MS, PLANE_MAGIC, PLANE_TICKET_BYTES, readExactly } from './hello.js'

/** Connections one grant may open at one listener (the puller's parallel connections). */
export const MAX_PLANE_CONNECTIONS = 8
/** Connections not yet past their hello, all grants together; more are closed at once. */
export const MAX_PLANE_HELLOS = 64

/** Where a blob is: its bytes (a record), where its bytes lie (a chunk), or null (not in the export). */
export type Found = Uint8Array | ChunkSource | null

export interface ListenerHooks {
  /** Where each of `hashes` (32 bytes each) is, for the grant with this ticket (hex). */
  resolve: (ticket: string, hashes: Uint8Array) => Promise<Found[]>
  /** The grant's connections at this listener now number `n`. */
  live: (ticket: string, n: number) => void
  warn: (message: string, err: unknown) => void
}

interface Grant {
  key: Uint8Array
  maxFrameBytes: number
  live: Set<net.Socket>
}

export class PlaneListener {
  private readonly grants = new Map<string, Grant>()
  private hellos = 0

  private constructor (private readonly server: net.Server, private readonly hooks: ListenerHooks) {
    server.on('connection', (socket) => { this.accept(socket) })
  }

  /** Listens on `host` (an address of this machine), on a port the system picks. */
  static async listen (host: string, hooks: ListenerHooks): Promise<PlaneListener> {
    const server = net.createServer({ noDelay: true })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host, port: 0 }, () => { server.off('error', reject); resolve() })
    })
    server.on('error', (err) => { hooks.warn('the data plane listener failed', err) })
    return new PlaneListener(server, hooks)
  }

  get port (): number {
    return (this.server.address() as net.AddressInfo).port
  }

  grant (ticket: string, key: Uint8Array, maxFrameBytes: number): void {
    this.grants.set(ticket, { key, maxFrameBytes, live: new Set() })
  }

  /** Refuses the ticket from now on and closes its connections. */
  end (ticket: string): void {
    const g = this.grants.get(ticket)
    this.grants.delete(ticket)
    for (const s of g?.live ?? []) s.destroy()
  }

  async close (): Promise<void> {
    for (const ticket of [...this.grants.keys()]) this.end(ticket)
    await new Promise<void>((resolve) => { this.server.close(() => { resolve() }) })
  }

  private accept (socket: net.Socket): void {
    socket.on('error', () => {})
    if (this.hellos >= MAX_PLANE_HELLOS) {
      socket.destroy()
      return
    }
    this.hellos++
    readExactly(socket, CLIENT_HELLO_BYTES, PLANE_HELLO_TIMEOUT_MS).then((hello) => {
      this.hellos--
      const magic = hello.subarray(0, PLANE_MAGIC.byteLength)
      const ticket = hello.subarray(PLANE_MAGIC.byteLength, PLANE_MAGIC.byteLength + PLANE_TICKET_BYTES).toString('hex')
      const clientNonce = hello.subarray(PLANE_MAGIC.byteLength + PLANE_TICKET_BYTES)
      const g = magic.equals(PLANE_MAGIC) ? this.grants.get(ticket) : undefined
      if (g === undefined || g.live.size >= MAX_PLANE_CONNECTIONS) {
        socket.destroy()
        return
      }
      g.live.add(socket)
      this.hooks.live(ticket, g.live.size)
      socket.once('close', () => {
        g.live.delete(socket)
        if (this.grants.get(ticket) === g) this.hooks.live(ticket, g.live.size)
      })
      const serverNonce = newPlaneNonce()
      socket.write(serverNonce)
      const channel = socketChannel(socket, planeRecordCap(g.maxFrameBytes), frameCipher(g.key, clientNonce, serverNonce, false))
      socket.resume()
      void this.serve(channel, ticket)
    }, () => {
      this.hellos--
      socket.destroy()
    })
  }

  /** The wants of one connection, answered in order as on the sync stream. */
  private async serve (channel: SocketChannel, ticket: string): Promise<void> {
    const files = new Map<string, number>()
    try {
      for (;;) {
        const raw = await withTimeout(channel.recv(), SYNC_IDLE_TIMEOUT_MS, `no data plane request for ${SYNC_IDLE_TIMEOUT_MS} ms`)
        if (raw === undefined) return
        const req = parseSyncRequest(raw)
        if (req.t !== 'want') throw new VgridError('ERR_BAD_MESSAGE', 'expected want')
        const found = await this.hooks.resolve(ticket, req.hashes)
        for (let i = 0; i < found.length; i++) {
          const h = req.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES)
          const f = found[i]!
          const data = f === null || f instanceof Uint8Array ? f : readSource(f, h, files)
          if (data === null || data === undefined) await channel.send({ t: 'missing', h })
          else await channel.sendPieces(blobReplyPieces(h, data))
        }
      }
    } catch (err) {
      // a connection that failed its tag is closed already: nothing is said to it
      if (!channel.closed) {
        this.hooks.warn('refused a data plane request', err)
        await channel.send({ t: 'error', error: toWire(err) }).catch(() => {})
      }
    } finally {
      for (const fd of files.values()) closeQuietly(fd)
      await channel.close().catch(() => {})
    }
  }
}
