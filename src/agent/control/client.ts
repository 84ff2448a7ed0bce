/**
 * The CLI's side of the control socket: connect to `$VGRID_HOME/agent.sock`, say hello with
 * the protocol version, and either hand back the channel (a `run` streams over it), make one
 * request and return its reply (`call`), or stream a task's log (`taskLog`). Imported by every command, so it stays light: node:net,
 * the frame channel and the wire types, nothing from the agent's own modules.
 */
import net from 'node:net'
import path from 'node:path'
import { socketChannel, type FrameChannel } from '../../common/channel.js'
import { VgridError, fromWire } from '../../common/errors.js'
import { obj, str, optStr, strArray, bytes, bad } from '../../common/validate.js'
import { CONTROL_VERSION, MAX_SHARDS, SOCKET_NAME, type ControlRequest, type ControlReply } from '../../protocol/control.js'
import { isTaskId, parseTaskRecord } from '../tasks/types.js'
import type { AgentStatus, PeerView } from '../../grid/types.js'

/** Connecting and the hello exchange must finish in this time: a live agent answers at once. */
export const CONNECT_TIMEOUT_MS = 5_000
/** A one-shot request (peers, status, join-token, task-…) is answered at once; waiting longer means a stuck agent. */
export const REQUEST_TIMEOUT_MS = 10_000
/** The largest output chunk a `task-log` frame may carry. */
export const MAX_LOG_CHUNK_BYTES = 1024 * 1024

const NO_AGENT_HINT = 'start one with `vgrid agent` (first machine of a grid) or `vgrid agent --join TOKEN`; ' +
  'set VGRID_HOME if your agent uses another home'

export interface AgentConnection {
  channel: FrameChannel
  /** The agent's peer id, from its hello. */
  peer: string
}

export interface ConnectOptions {
  timeoutMs?: number
  /** How the command names itself in the hello (default `vgrid`). */
  client?: string
  /**
   * The request, sent right behind the hello instead of after its answer: the agent reads the
   * two in order, so every command starts a round trip sooner. An agent that refuses the
   * hello never reads it.
   */
  first?: unknown
  /** Called with the channel once it is open, before anything is sent (vrun takes its signals there). */
  opened?: (channel: FrameChannel) => void
}

/** Opens a control connection and completes the handshake; ERR_NO_AGENT when nobody listens. */
export async function connectAgent (home: string, client: string, opts: ConnectOptions = {}): Promise<AgentConnection> {
  const sock = path.join(home, SOCKET_NAME)
  const timeoutMs = opts.timeoutMs ?? CONNECT_TIMEOUT_MS
  const socket = await withDeadline(openSocket(sock), timeoutMs, () => timedOut(sock, timeoutMs), (s) => s.destroy())
  const channel = socketChannel(socket)
  try {
    opts.opened?.(channel)
    const hello = channel.send({ t: 'hello', v: CONTROL_VERSION, client })
    const first = opts.first === undefined ? undefined : channel.send(opts.first).then(() => undefined, () => lostAgent())
    await hello
    const reply = await withDeadline(channel.recv(), timeoutMs, () => timedOut(sock, timeoutMs))
    const peer = parseHelloReply(reply, sock)
    const failed = await first
    if (failed !== undefined) throw failed
    return { channel, peer }
  } catch (err) {
    channel.destroy()
    throw err
  }
}

/** Requests answered by one reply (every request but `run`, and `task-log`, which streams). */
export type OneShot = Extract<ControlRequest, { t: 'peers' | 'status' | 'join-token' | 'batch' | 'task-list' | 'task-show' | 'task-cancel' | 'task-wait' | 'ui-login' }>

/** The reply each one-shot request gets when it succeeds (errors are thrown). */
const REPLY_TYPE = {
  peers: 'peers',
  status: 'status',
  'join-token': 'join-token',
  batch: 'batched',
  'task-list': 'task-list',
  'task-show': 'task',
  'task-cancel': 'task',
  'task-wait': 'task',
  'ui-login': 'ui-login'
} as const satisfies Record<OneShot['t'], ControlReply['t']>

export type ReplyTo<R extends OneShot> = Extract<ControlReply, { t: typeof REPLY_TYPE[R['t']] }>

/**
 * Connects, makes one request and returns its checked reply; an error reply is thrown as a
 * VgridError. `task-wait` has no deadline (a task may run for days); every other request is
 * answered from the agent's memory or a quick look around the grid, within `timeoutMs`
 * (default REQUEST_TIMEOUT_MS).
 */
export async function call<R extends OneShot> (home: string, req: R, opts: ConnectOptions = {}): Promise<ReplyTo<R>> {
  const { channel } = await connectAgent(home, opts.client ?? 'vgrid', { ...opts, first: req })
  try {
    const recv = channel.recv()
    const raw = await (req.t === 'task-wait' ? recv : withDeadline(recv, opts.timeoutMs ?? REQUEST_TIMEOUT_MS, () => requestTimedOut(req.t, opts.timeoutMs ?? REQUEST_TIMEOUT_MS)))
      .catch((err: unknown) => { throw err instanceof VgridError && err.code !== 'ERR_PEER_LOST' ? err : lostAgent() })
    if (raw === undefined) throw lostAgent()
    return parseReply(req.t, raw) as ReplyTo<R>
  } finally {
    channel.destroy()
  }
}

/** The name `vgrid peers`, `status` and `join-token` have used; the same as `call`. */
export const request = call

/** Checks the shape of the reply to a one-shot request `t`; fields that are only shown are not checked deeply. */
export function parseReply (t: OneShot['t'], raw: unknown): ControlReply {
  const m = obj(raw, 'reply')
  if (m.t === 'error') throw fromWire(m.error)
  const want = REPLY_TYPE[t]
  if (m.t !== want) bad(`expected a ${want} reply, got ${String(m.t).slice(0, 32)}`)
  switch (want) {
    case 'peers':
      if (!Array.isArray(m.peers)) bad('peers is not a list')
      return { t: want, peers: m.peers.map((p, i) => obj(p, `peers[${i}]`)) as unknown as PeerView[] }
    case 'status':
      return { t: want, status: obj(m.status, 'status') as unknown as AgentStatus }
    case 'join-token':
      return { t: want, token: str(m.token, 'token', 16 * 1024) }
    case 'batched': {
      const ids = strArray(m.ids, 'ids', MAX_SHARDS, 16)
      if (ids.length === 0) bad('ids is empty')
      for (const id of ids) if (!isTaskId(id)) bad('ids holds something that is not a task id')
      const dashboard = optStr(m.dashboard, 'dashboard', 1024)
      return dashboard === undefined ? { t: want, ids } : { t: want, ids, dashboard }
    }
    case 'task-list':
      if (!Array.isArray(m.tasks)) bad('tasks is not a list')
      return { t: want, tasks: m.tasks.map(parseTaskRecord), unreachable: strArray(m.unreachable ?? [], 'unreachable', 100_000, 256) }
    case 'task': {
      const task = parseTaskRecord(m.task)
      if (m.shards === undefined) return { t: want, task }
      if (!Array.isArray(m.shards) || m.shards.length === 0 || m.shards.length > MAX_SHARDS) bad('shards is not a list of records')
      return { t: want, task, shards: m.shards.map(parseTaskRecord) }
    }
    case 'ui-login':
      return { t: want, url: str(m.url, 'url', 16 * 1024) }
  }
}

/** A frame of `task-log`: output of the task, or its record, which ends the stream. */
export type LogFrame = Extract<ControlReply, { t: 'log' | 'task' }>

export interface TaskLogOptions extends ConnectOptions {
  /** Ends the stream early (the generator returns without the final record). */
  signal?: AbortSignal
}

/**
 * `task-log`: yields the task's output as `{ t: 'log', fd, data }` frames, in order, then its
 * record as `{ t: 'task', task }`, and ends. With `follow` the output of a task still running
 * keeps coming until it ends, however long that is: no deadline. Without it the agent sends
 * what it has, and a gap of `timeoutMs` between frames means a stuck agent. The socket is read
 * only as fast as the consumer takes frames, so a slow terminal slows the agent, not memory.
 */
export async function * taskLog (home: string, req: { id: string, follow: boolean, stderrOnly: boolean, workspace?: string }, opts: TaskLogOptions = {}): AsyncGenerator<LogFrame, void, undefined> {
  const aborted = (): boolean => opts.signal?.aborted === true
  if (aborted()) return
  const first = { t: 'task-log', id: req.id, follow: req.follow, stderrOnly: req.stderrOnly, ...(req.workspace !== undefined ? { workspace: req.workspace } : {}) }
  const { channel } = await connectAgent(home, opts.client ?? 'vgrid', { ...opts, first })
  const onAbort = (): void => { channel.destroy() }
  opts.signal?.addEventListener('abort', onAbort)
  const timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS
  try {
    if (aborted()) return
    for (;;) {
      const recv = channel.recv()
      let raw: unknown
      try {
        raw = await (req.follow ? recv : withDeadline(recv, timeoutMs, () => requestTimedOut('task-log', timeoutMs)))
      } catch (err) {
        if (aborted()) return
        throw err instanceof VgridError && err.code !== 'ERR_PEER_LOST' ? err : lostAgent()
      }
      if (aborted()) return
      if (raw === undefined) throw lostAgent()
      const frame = parseLogFrame(raw)
      yield frame
      if (frame.t === 'task') return
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
    channel.destroy()
  }
}

export function parseLogFrame (raw: unknown): LogFrame {
  const m = obj(raw, 'log frame')
  if (m.t === 'error') throw fromWire(m.error)
  if (m.t === 'task') return { t: 'task', task: parseTaskRecord(m.task) }
  if (m.t !== 'log') bad(`expected a log or task frame, got ${String(m.t).slice(0, 32)}`)
  if (m.fd !== 1 && m.fd !== 2) bad('fd is not 1 or 2')
  return { t: 'log', fd: m.fd, data: bytes(m.data, 'data', MAX_LOG_CHUNK_BYTES) }
}

function requestTimedOut (t: string, ms: number): VgridError {
  return new VgridError('ERR_TIMEOUT', `the vgrid agent did not answer the ${t} request within ${ms} ms`,
    'it may be overloaded or stuck; look at its output, or restart it')
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
