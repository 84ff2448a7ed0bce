/**
 * The agent's side of the control socket. One connection carries one request: a hello with
 * the protocol version, then the request, then (for `run`) a stream of inputs and events.
 * A client that says nothing valid within CONTROL_HANDSHAKE_TIMEOUT_MS is dropped; a
 * malformed or oversized message is refused with an error reply and logged, and the agent
 * goes on serving everyone else.
 */
import net from 'node:net'
import fs from 'node:fs'
import path from 'node:path'
import { socketChannel, MAX_FRAME_BYTES, type FrameChannel } from '../../common/channel.js'
import { VgridError, toWire } from '../../common/errors.js'
import { createLogger } from '../../common/log.js'
import {
  CONTROL_VERSION, CONTROL_HANDSHAKE_TIMEOUT_MS, SOCKET_NAME,
  parseHello, parseControlRequest, type ControlRequest
} from '../../protocol/control.js'

const log = createLogger('control')

/** What the agent does for each request. `run` owns the channel until the command ends. */
export interface ControlHandlers {
  peer: string
  handle (req: ControlRequest, channel: FrameChannel): Promise<void>
}

export interface ControlServer {
  readonly path: string
  close (): Promise<void>
}

/** The control socket's mode: its owner's alone. */
export const SOCKET_MODE = 0o600

/** `owner`: the socket is handed to this user (a guest task's, when the agent is root). */
export async function startControlServer (home: string, handlers: ControlHandlers, owner?: { uid: number, gid: number }): Promise<ControlServer> {
  const sockPath = path.join(home, SOCKET_NAME)
  await removeStaleSocket(sockPath)
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    void serve(socket, handlers)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(sockPath, () => { server.off('error', reject); resolve() })
  })
  // Only the owner may talk to the agent: it runs commands as them. The mode is set on the
  // socket, not through the umask: that is the whole process's, and it stayed narrowed until
  // the listen callback, so a directory another task made meanwhile came out 0600 (a guest's
  // copy it could not enter). Until this chmod the socket is only reachable through its
  // directory, which is 0700 (the agent's home, a guest's home).
  fs.chmodSync(sockPath, SOCKET_MODE)
  // blocking: microseconds of metadata, where a thread-pool round trip held each command's start
  if (owner !== undefined) fs.chownSync(sockPath, owner.uid, owner.gid)
  return {
    path: sockPath,
    async close () {
      await new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        for (const s of sockets) s.destroy()
      })
      await fs.promises.rm(sockPath, { force: true })
    }
  }
}

/** Fails at once when another agent serves this home: checked before the agent takes anything. */
export async function assertNoLiveAgent (home: string): Promise<void> {
  await removeStaleSocket(path.join(home, SOCKET_NAME))
}

/** A socket file left by a crashed agent is removed; a live one means another agent runs here. */
async function removeStaleSocket (sockPath: string): Promise<void> {
  if (!fs.existsSync(sockPath)) return
  const alive = await new Promise<boolean>((resolve) => {
    const s = net.connect(sockPath)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { resolve(false) })
  })
  if (alive) {
    throw new VgridError('ERR_BAD_ARGUMENT', `an agent is already running with this home (${path.dirname(sockPath)})`,
      'stop it first, or give this agent its own home with VGRID_HOME=DIR')
  }
  await fs.promises.rm(sockPath, { force: true })
}

async function serve (socket: net.Socket, handlers: ControlHandlers): Promise<void> {
  const channel = socketChannel(socket, MAX_FRAME_BYTES)
  const timer = setTimeout(() => {
    log.warn('dropped a control client that sent no request in time')
    channel.destroy()
  }, CONTROL_HANDSHAKE_TIMEOUT_MS)
  let req: ControlRequest
  try {
    const first = await channel.recv()
    // A client that connects and leaves without a word (a probe for a live agent) is no error.
    if (first === undefined) { clearTimeout(timer); return }
    const hello = parseHello(first)
    if (hello.v !== CONTROL_VERSION) {
      throw new VgridError('ERR_AGENT_VERSION', `the agent speaks control protocol ${CONTROL_VERSION}, the command ${hello.v}`,
        'restart the agent with the same vgrid version as the command')
    }
    await channel.send({ t: 'hello', v: CONTROL_VERSION, peer: handlers.peer })
    req = parseControlRequest(await channel.recv())
  } catch (err) {
    clearTimeout(timer)
    log.warn('refused a control request', err)
    if (!channel.closed) {
      await channel.send({ t: 'error', error: toWire(err) }).catch(() => {})
      await channel.close().catch(() => {})
    }
    return
  }
  clearTimeout(timer)
  try {
    await handlers.handle(req, channel)
  } catch (err) {
    if (!(err instanceof VgridError)) log.error(`${req.t} request failed`, err)
    await channel.send({ t: 'error', error: toWire(err) }).catch(() => {})
  } finally {
    await channel.close().catch(() => {})
  }
}
