/**
 * The CLI's side of the control socket: connect to `$VGRID_HOME/agent.sock`, say hello with
 * the protocol version, and either hand back the channel (a `run` streams over it) or make
 * one request and return its reply. Imported by every command, so it stays light: node:net,
 * the frame channel and the wire types, nothing from the agent's own modules.
 */
import net from 'node:net'
import path from 'node:path'
import { socketChannel, type FrameChannel } from '../../common/channel.js'
import { VgridError, fromWire } from '../../common/errors.js'
import { obj, str, bad } from '../../common/validate.js'
import { CONTROL_VERSION, SOCKET_NAME, type ControlRequest, type ControlReply } from './protocol.js'
import type { AgentStatus, PeerView } from '../../grid/types.js'

/** Connecting and the hello exchange must finish in this time: a live agent answers at once. */
export const CONNECT_TIMEOUT_MS = 5_000
/** A one-shot request (peers, status, join-token) is answered from memory; waiting longer means a stuck agent. */
export const REQUEST_TIMEOUT_MS = 10_000

const NO_AGENT_HINT = 'start one with `vgrid agent` (first machine of a grid) or `vgrid agent --join TOKEN`; ' +
  'set VGRID_HOME if your agent uses another home'

export interface AgentConnection {
  channel: FrameChannel
  /** The agent's peer id, from its hello. */
  peer: string
}

export interface ConnectOptions {
  timeoutMs?: number
}

/** Opens a control connection and completes the handshake; ERR_NO_AGENT when nobody listens. */
export async function connectAgent (home: string, client: string, opts: ConnectOptions = {}): Promise<AgentConnection> {
  const sock = path.join(home, SOCKET_NAME)
  const timeoutMs = opts.timeoutMs ?? CONNECT_TIMEOUT_MS
  const socket = await withDeadline(openSocket(sock), timeoutMs, () => timedOut(sock, timeoutMs), (s) => s.destroy())
  const channel = socketChannel(socket)
  try {
    await channel.send({ t: 'hello', v: CONTROL_VERSION, client })
    const reply = await withDeadline(channel.recv(), timeoutMs, () => timedOut(sock, timeoutMs))
    return { channel, peer: parseHelloReply(reply, sock) }
  } catch (err) {
    channel.destroy()
    throw err
  }
}

type OneShot = Extract<ControlRequest, { t: 'peers' | 'status' | 'join-token' }>
/** The reply a one-shot request gets when it succeeds (errors are thrown). */
export type ReplyTo<R extends OneShot> = Extract<ControlReply, { t: R['t'] }>

/** Connects, makes one request and returns its reply; an error reply is thrown as a VgridError. */
export async function request<R extends OneShot> (home: string, req: R, opts: ConnectOptions = {}): Promise<ReplyTo<R>> {
  const { channel } = await connectAgent(home, 'vgrid', opts)
  try {
    await channel.send(req)
    const timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS
    const raw = await withDeadline(channel.recv(), timeoutMs, () =>
      new VgridError('ERR_TIMEOUT', `the vgrid agent did not answer the ${req.t} request within ${timeoutMs} ms`,
        'it may be overloaded or stuck; look at its output, or restart it'))
      .catch((err: unknown) => { throw err instanceof VgridError ? err : lostAgent() })
    if (raw === undefined) throw lostAgent()
    return parseReply(req.t, raw) as ReplyTo<R>
  } finally {
    channel.destroy()
  }
}

/** Checks the shape of a one-shot reply; deeper fields are only rendered, never acted on. */
export function parseReply (t: OneShot['t'], raw: unknown): ControlReply {
  const m = obj(raw, 'reply')
  if (m.t === 'error') throw fromWire(m.error)
  if (m.t !== t) bad(`expected a ${t} reply, got ${String(m.t).slice(0, 32)}`)
  switch (t) {
    case 'peers':
      if (!Array.isArray(m.peers)) bad('peers is not a list')
      return { t, peers: m.peers.map((p, i) => obj(p, `peers[${i}]`)) as unknown as PeerView[] }
    case 'status':
      return { t, status: obj(m.status, 'status') as unknown as AgentStatus }
    case 'join-token':
      return { t, token: str(m.token, 'token', 16 * 1024) }
  }
}

export function lostAgent (): VgridError {
  return new VgridError('ERR_PEER_LOST', 'lost connection to the agent',
    'the agent may have stopped or crashed; look at its output, then start it again with `vgrid agent`')
}

function parseHelloReply (raw: unknown, sock: string): string {
  if (raw === undefined) {
    throw new VgridError('ERR_NO_AGENT', `the vgrid agent at ${sock} closed the connection during the handshake`,
      'it may be shutting down; start it again with `vgrid agent`')
  }
  const m = obj(raw, 'hello reply')
  if (m.t === 'error') throw fromWire(m.error)
  if (m.t !== 'hello') bad('expected a hello reply')
  if (m.v !== CONTROL_VERSION) {
    throw new VgridError('ERR_AGENT_VERSION',
      `the vgrid agent speaks control protocol ${String(m.v).slice(0, 16)}, this command speaks ${CONTROL_VERSION}`,
      'restart the agent with the same vgrid version as the command (stop it, then run `vgrid agent`)')
  }
  return str(m.peer, 'peer', 256)
}

function openSocket (sock: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(sock)
    socket.once('connect', () => { socket.off('error', onError); resolve(socket) })
    const onError = (err: NodeJS.ErrnoException): void => { socket.destroy(); reject(noAgent(sock, err)) }
    socket.once('error', onError)
  })
}

/** ENOENT: no agent ever ran with this home; ECONNREFUSED: a socket file left by a dead one. */
function noAgent (sock: string, err: NodeJS.ErrnoException): VgridError {
  if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTDIR') {
    return new VgridError('ERR_NO_AGENT', `no vgrid agent is running (looked for ${sock})`, NO_AGENT_HINT)
  }
  if (err.code === 'EACCES' || err.code === 'EPERM') {
    return new VgridError('ERR_NO_AGENT', `cannot reach the vgrid agent at ${sock}: permission denied`,
      'the agent belongs to another user; run your own with VGRID_HOME=DIR vgrid agent')
  }
  return new VgridError('ERR_NO_AGENT', `cannot reach the vgrid agent at ${sock}: ${err.message}`, NO_AGENT_HINT)
}

function timedOut (sock: string, ms: number): VgridError {
  return new VgridError('ERR_TIMEOUT', `the vgrid agent at ${sock} did not answer within ${ms} ms`,
    'it may be overloaded or stuck; look at its output, or restart it')
}

/** Races `p` against a timer; a value that arrives after the deadline is handed to `dispose`. */
async function withDeadline<T> (p: Promise<T>, ms: number, onTimeout: () => Error, dispose?: (v: T) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  let expired = false
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { expired = true; reject(onTimeout()) }, ms)
    })])
  } finally {
    clearTimeout(timer)
    if (expired && dispose !== undefined) p.then(dispose, () => {})
  }
}
