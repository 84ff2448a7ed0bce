/**
 * The control socket (`$VGRID_HOME/agent.sock`) between the CLI and its agent: frames of a
 * 4-byte length and a CBOR body (see common/channel.ts). The client opens with
 * `{ t: 'hello', v, client }`, the agent answers `{ t: 'hello', v, peer }` or an error, then the
 * client sends one request. Requests and replies:
 *
 * - `{ t: 'run', spec, on?, workspace? }` (workspace: `{ dir, cwd }`, the absolute root and the
 *   current directory relative to it; absent with --no-sync) → maybe `{ t: 'queued', message }` (every member that fits is
 *   busy: the run waits for one), then `{ t: 'placed', peer, host, local }`, then exec events
 *   (started, out, exit, error); the client streams exec inputs (stdin, eof, signal, resize).
 *   A member that cannot take the run after all (no disk space, its sync or sandbox failed,
 *   before the command started) sends `{ t: 'refused', peer, host, error }`: the run is
 *   placed again, and another `placed` follows.
 * - `{ t: 'peers' }` → `{ t: 'peers', peers: PeerView[] }`
 * - `{ t: 'status', settle? }` → `{ t: 'status', status: AgentStatus }`; with `settle`, the
 *   agent's memory (`status.usage`) is measured after a full garbage collection where the
 *   agent allows it (VGRID_DEBUG_GC=1, see agent/memory.ts).
 * - `{ t: 'join-token' }` → `{ t: 'join-token', token }`
 * - `{ t: 'batch', batch: BatchRequest }` → `{ t: 'batched', ids, dashboard? }` (one id per shard), at once:
 *   the tasks run detached, owned by this agent (or, with `parent`, by the agent running it).
 *   `dashboard`: the agent's HTTP address, when it serves one (not to a guest task).
 * - `{ t: 'ui-login' }` (`vgrid ui`) → `{ t: 'ui-login', url }`: a one-time login link to the
 *   dashboard; only the socket's owner gets one.
 * - `{ t: 'task-list', all }` → `{ t: 'task-list', tasks, unreachable }` (every member's).
 * - `{ t: 'task-show', id }` → `{ t: 'task', task }`; `id` may be a unique prefix.
 * - `{ t: 'task-log', id, follow, stderrOnly }` → `{ t: 'log', fd, data }`… then `{ t: 'task', task }`.
 * - `{ t: 'task-cancel', id }` → `{ t: 'task', task }` (cancelled with its sub-tasks).
 * - `{ t: 'task-wait', id }` → `{ t: 'task', task }` once it has ended.
 *   Both take the name of a fan-out whole: the reply then also holds `shards`, every shard's
 *   record in order (`task` is the first).
 * - `{ t: 'agent-set', patch }` (`vgrid agent set`; an empty patch only asks) → `{ t: 'policy',
 *   policy, warnings, saved? }`: the owner policy now in force, and the config file it was saved in.
 * - `{ t: 'agent-stop', drain }` (`vgrid agent stop`) → without drain, `{ t: 'stopping', host,
 *   pid, count }` and the agent stops at once, its commands with it; with drain, `{ t:
 *   'draining', host, count }` at once and at every change of what still runs, then `stopping`
 *   when nothing does (the agent then stops), or `{ t: 'resumed', host }` when `agent set
 *   --resume` called the drain off. The client leaving changes nothing: the agent drains on.
 * - any request may be answered `{ t: 'error', error: { code, message, hint } }`.
 *
 * This file is imported by the CLI: it must not import libp2p or anything heavy.
 */
import { obj, str, optStr, int, oneOf, bad } from '../common/validate.js'
import { parseRunSpec, type PlacementEvent, type RunSpec } from './session.js'
import { VgridError, type WireError } from '../common/errors.js'
import type { AgentStatus, PeerView } from '../grid/types.js'
import type { WorkspaceRef } from '../fs-sync/workspace.js'
import { DEP_KINDS, isTaskId, type DepKind, type TaskRecord } from '../agent/tasks/types.js'
import { checkPolicyPatch, type PolicyPatch } from '../agent/config.js'

export const CONTROL_VERSION = 1
export const SOCKET_NAME = 'agent.sock'
/** A client that has not said hello and made its request in this time is dropped. */
export const CONTROL_HANDSHAKE_TIMEOUT_MS = 5_000

export interface Hello { t: 'hello', v: number, client: string }
export interface HelloReply { t: 'hello', v: number, peer: string }

/** What `vbatch` asks for. */
export interface BatchRequest {
  spec: RunSpec
  on?: string
  workspace?: WorkspaceRef
  name?: string
  after: Array<{ kind: DepKind, name: string }>
  /** -N: how many shards (1 = a single task). */
  shards: number
  gang: boolean
  retries: number
  timeoutMs?: number
  /** VGRID_TASK_ID of the task whose command submits this one. */
  parent?: string
  /** Set by the agent, never read from the wire: submitted through a guest task's socket. */
  guest?: boolean
}

/** The options of a submission that `vbatch` reads from its command line. */
export type BatchOptions = Pick<BatchRequest, 'name' | 'after' | 'shards' | 'gang' | 'retries' | 'timeoutMs'>

export const MAX_SHARDS = 10_000

/** What a machine lends and how (`vgrid agent set`). */
export interface PolicyView {
  host: string
  /** The machine: cores, memory, GPU indexes. */
  cores: number
  memBytes: number
  gpus: number[]
  /** What it lends of that. */
  offer: { cpus: number, memBytes: number, gpus: number[] }
  /** Commands at once at most; absent = no limit. */
  maxTasks?: number
  nice: number
  onlyWhenIdle: boolean
  /** With onlyWhenIdle: whether the owner is using the machine, and their load (% of all cores, averaged). */
  owner?: { state: 'starting' | 'busy' | 'idle', load?: number }
  /** Commands running here now. */
  running: number
  /** `--accept-from`: the only members whose commands run here (host when the grid shows it); absent = every member. */
  acceptFrom?: Array<{ peer: string, host?: string }>
  /** Whether it takes new commands (`--pause`, `agent stop --drain`); absent from older agents = yes. */
  lending?: 'yes' | 'paused' | 'draining'
}
export const MAX_DEPS = 256
/** Longest task name (--name). */
export const MAX_TASK_NAME_CHARS = 256
export const MAX_PATH_CHARS = 4096

export type ControlRequest =
  | { t: 'run', spec: RunSpec, on?: string, workspace?: WorkspaceRef, parent?: string, name?: string, after?: Array<{ kind: DepKind, name: string }> }
  | { t: 'peers' }
  | { t: 'status', settle?: boolean }
  | { t: 'join-token' }
  | { t: 'batch', batch: BatchRequest }
  | { t: 'task-list', all: boolean }
  | { t: 'task-show', id: string, workspace?: string }
  | { t: 'task-log', id: string, follow: boolean, stderrOnly: boolean, workspace?: string }
  | { t: 'task-cancel', id: string, workspace?: string }
  | { t: 'task-wait', id: string, workspace?: string }
  | { t: 'agent-set', patch: PolicyPatch }
  | { t: 'agent-stop', drain: boolean }
  | { t: 'ui-login' }

/** What still runs on a draining agent (drain.ts). */
export interface DrainCountView { guests: number, others: number }

export type ControlReply =
  | HelloReply
  | PlacementEvent
  | { t: 'peers', peers: PeerView[] }
  | { t: 'status', status: AgentStatus }
  | { t: 'join-token', token: string }
  | { t: 'batched', ids: string[], dashboard?: string }
  | { t: 'ui-login', url: string }
  | { t: 'task-list', tasks: TaskRecord[], unreachable: string[] }
  | { t: 'task', task: TaskRecord, shards?: TaskRecord[] }
  | { t: 'log', fd: 1 | 2, data: Uint8Array }
  | { t: 'policy', policy: PolicyView, warnings: string[], saved?: string }
  | { t: 'draining', host: string, count: DrainCountView }
  | { t: 'stopping', host: string, pid: number, count: DrainCountView }
  | { t: 'resumed', host: string }
  | { t: 'error', error: WireError }

export function parseHello (v: unknown): Hello {
  const m = obj(v, 'hello')
  if (m.t !== 'hello') bad('expected hello')
  return { t: 'hello', v: int(m.v, 'v', 0, 2 ** 31), client: str(m.client ?? 'unknown', 'client', 64) }
}

export function parseControlRequest (v: unknown): ControlRequest {
  const m = obj(v, 'request')
  const t = oneOf(m.t, 't', ['run', 'peers', 'status', 'join-token', 'batch', 'task-list', 'task-show', 'task-log', 'task-cancel', 'task-wait', 'agent-set', 'agent-stop', 'ui-login'] as const)
  switch (t) {
    case 'run': {
      const req: ControlRequest = { t: 'run', spec: parseRunSpec(m.spec) }
      const on = optStr(m.on, 'on', 256)
      if (on !== undefined) req.on = on
      const ws = parseWorkspace(m.workspace)
      if (ws !== undefined) req.workspace = ws
      const parent = parseParent(m.parent)
      if (parent !== undefined) req.parent = parent
      const name = optStr(m.name, 'name', MAX_TASK_NAME_CHARS)
      if (name !== undefined) req.name = name
      if (m.after !== undefined && m.after !== null) req.after = parseAfter(m.after)
      return req
    }
    case 'status': return m.settle === true ? { t, settle: true } : { t }
    case 'batch': return { t, batch: parseBatch(m.batch) }
    case 'task-list': return { t, all: m.all === true }
    case 'task-show': case 'task-cancel': case 'task-wait': return withWorkspace({ t, id: taskRef(m.id) }, m.workspace)
    case 'task-log': return withWorkspace({ t, id: taskRef(m.id), follow: m.follow === true, stderrOnly: m.stderrOnly === true }, m.workspace)
    case 'agent-set': return { t, patch: checkPolicyPatch(obj(m.patch, 'patch')) }
    case 'agent-stop': return { t, drain: m.drain === true }
    default: return { t }
  }
}

/** A task id, a unique prefix of one (lower-cased), or a task name (`NAME[i]` for a shard). */
function taskRef (v: unknown): string {
  const ref = str(v, 'id', MAX_TASK_NAME_CHARS + 8)
  // eslint-disable-next-line no-control-regex
  if (ref === '' || /[\s\x00-\x1f\x7f]/.test(ref)) throw new VgridError('ERR_BAD_ARGUMENT', `${JSON.stringify(ref)} is neither a task id nor a task name`)
  return /^[0-9a-fA-F]{1,16}$/.test(ref) ? ref.toLowerCase() : ref
}

/** Where the asking command runs (its workspace): the scope of a task name. */
function withWorkspace<T extends object> (req: T, v: unknown): T & { workspace?: string } {
  const workspace = optStr(v, 'workspace', MAX_PATH_CHARS)
  return workspace !== undefined ? { ...req, workspace } : req
}

function parseParent (v: unknown): string | undefined {
  const parent = optStr(v, 'parent', 64)
  if (parent === undefined || parent === '') return undefined
  if (!isTaskId(parent)) bad('parent is not a task id')
  return parent
}

function parseWorkspace (v: unknown): WorkspaceRef | undefined {
  if (v === undefined || v === null) return undefined
  const w = obj(v, 'workspace')
  const dir = str(w.dir, 'workspace.dir', MAX_PATH_CHARS)
  if (!dir.startsWith('/')) bad('workspace.dir is not absolute')
  return { dir, cwd: str(w.cwd ?? '', 'workspace.cwd', MAX_PATH_CHARS) }
}

function parseAfter (v: unknown): Array<{ kind: DepKind, name: string }> {
  const after = Array.isArray(v) && v.length <= MAX_DEPS ? v : bad(`after is not a list of at most ${MAX_DEPS}`)
  return after.map((d, i) => {
    const o = obj(d, `after[${i}]`)
    return { kind: oneOf(o.kind, `after[${i}].kind`, DEP_KINDS), name: str(o.name, `after[${i}].name`, MAX_TASK_NAME_CHARS) }
  })
}

export function parseBatch (v: unknown): BatchRequest {
  const m = obj(v, 'batch')
  const b: BatchRequest = {
    spec: parseRunSpec(m.spec),
    after: parseAfter(m.after),
    shards: int(m.shards ?? 1, 'shards', 1, MAX_SHARDS),
    gang: m.gang === true,
    retries: int(m.retries ?? 0, 'retries', 0, 1000)
  }
  const on = optStr(m.on, 'on', 256); if (on !== undefined) b.on = on
  const ws = parseWorkspace(m.workspace); if (ws !== undefined) b.workspace = ws
  const name = optStr(m.name, 'name', MAX_TASK_NAME_CHARS); if (name !== undefined) b.name = name
  if (m.timeoutMs !== undefined && m.timeoutMs !== null) b.timeoutMs = int(m.timeoutMs, 'timeoutMs', 1, 2 ** 40)
  const parent = parseParent(m.parent); if (parent !== undefined) b.parent = parent
  return b
}
