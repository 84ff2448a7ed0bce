/**
 * Task records as the agent keeps them and the CLI shows them (DESIGN.md §3). Light: the CLI
 * imports this file.
 */
import { obj, str, optStr, int, oneOf, bad } from '../../common/validate.js'

export const TASK_STATES = ['pending', 'queued', 'running', 'waiting-children', 'succeeded', 'failed', 'cancelled', 'upstream-failed', 'lost'] as const
export type TaskState = typeof TASK_STATES[number]
export const FINAL_STATES: ReadonlySet<TaskState> = new Set(['succeeded', 'failed', 'cancelled', 'upstream-failed', 'lost'])
export const isFinal = (s: TaskState): boolean => FINAL_STATES.has(s)

/** `--after-success NAME` (success), `--after-fail NAME` (fail), `--after NAME` (any end). */
export type DepKind = 'success' | 'fail' | 'any'
export const DEP_KINDS = ['success', 'fail', 'any'] as const

export interface TaskDep { kind: DepKind, name: string, id: string }

export interface TaskAttempt {
  peer: string
  host: string
  started: number
  ended?: number
  /** How this attempt ended: the task's final state, or `lost` for an executor that vanished. */
  state?: TaskState
  exitCode?: number
  error?: string
  /** The first frame of the task's log that belongs to this attempt (after its separator). */
  logFrom?: number
  /** false until its command started: an attempt lost before costs no retry. Absent on older records (counted). */
  began?: boolean
}

/** One change of a task's state, and why. */
export interface TaskChange { at: number, state: TaskState, why: string }
/** Changes kept per task: the first few and the latest (a task retried many times). */
export const MAX_TASK_CHANGES = 40

export interface TaskRecord {
  /** 16 hex digits. */
  id: string
  name?: string
  /** The task this one was submitted from (inside its command), when there is one. */
  parent?: string
  /** The agent that keeps this record and decides where it runs. */
  owner: string
  ownerHost: string
  /**
   * The member the task was submitted from: the owner for a `vrun`/`vbatch` typed there; for
   * a sub-task, the member that submitted the task it came from (taken from the libp2p
   * connection that brought that task, never from a message). Absent on older records.
   */
  submitter?: string
  /** Who it runs for, `user@host`, as the submitting member states it (not authenticated). */
  user?: string
  argv: string[]
  state: TaskState
  /** The command's exit status (128+N after signal N), once it ended. */
  exitCode?: number
  /** Why it failed, was lost or could not start, in words. */
  error?: string
  created: number
  started?: number
  ended?: number
  /** The executor of the current or last attempt. */
  peer?: string
  host?: string
  deps: TaskDep[]
  shard?: { index: number, count: number }
  retries: number
  timeoutMs?: number
  attempts: TaskAttempt[]
  /** A `vrun` (its life is tied to a terminal), not a `vbatch`. */
  attached: boolean
  /** Sub-tasks submitted from inside its command. */
  children: string[]
  /** Each change of its state, and why (`vgrid task show`). */
  history?: TaskChange[]
}

/**
 * The exit statuses of a task's end that are not its command's own (README, "Exit
 * statuses"). Cancelled reads as a shell reads an interrupted command, whatever the command
 * did with the SIGTERM it got; a task that never ran because of its dependencies is told
 * from one the grid lost, or could not start (255, as for any failure of the grid).
 */
export const EXIT_TASK_CANCELLED = 130
export const EXIT_UPSTREAM_FAILED = 254
export const EXIT_TASK_LOST = 255
/** Failed with no status of its command's to give: it exited 0, but a sub-task did not succeed. */
export const EXIT_CHILD_FAILED = 1

/** The exit status `vgrid task wait` and `vbatch -f` end with. */
export function taskExitCode (t: TaskRecord): number {
  switch (t.state) {
    case 'succeeded': return 0
    case 'failed':
      if (t.exitCode === undefined) return EXIT_TASK_LOST // it could not start: the grid failed it
      return t.exitCode !== 0 ? t.exitCode : EXIT_CHILD_FAILED
    case 'cancelled': return EXIT_TASK_CANCELLED
    case 'upstream-failed': return EXIT_UPSTREAM_FAILED
    default: return EXIT_TASK_LOST
  }
}

/**
 * Who may cancel a task (DESIGN §5): the agent that owns it, the member it was submitted from,
 * and the member running it (its owner stops what runs on their machine). The executor of an
 * attempt that has ended may no longer, unless the task is over (then cancel changes nothing).
 */
export function mayCancel (t: TaskRecord, peer: string): boolean {
  if (peer === t.owner || peer === (t.submitter ?? t.owner)) return true
  if (t.peer !== peer) return false
  const last = t.attempts.at(-1)
  return isFinal(t.state) || (last !== undefined && last.peer === peer && last.ended === undefined)
}

/** The order tasks were submitted in: by creation, a fan-out's shards by index, then by id. */
export function bySubmission (a: TaskRecord, b: TaskRecord): number {
  return a.created - b.created || (a.shard?.index ?? 0) - (b.shard?.index ?? 0) || a.id.localeCompare(b.id)
}

const ID_RE = /^[0-9a-f]{16}$/
const MAX_LIST = 100_000

/** Validates a record from a peer or a file. */
export function parseTaskRecord (v: unknown): TaskRecord {
  const m = obj(v, 'task')
  const id = str(m.id, 'id', 16)
  if (!ID_RE.test(id)) bad('id is not a task id')
  const num = (x: unknown, what: string): number => int(x, what, 0, Number.MAX_SAFE_INTEGER)
  const optNum = (x: unknown, what: string): number | undefined => x === undefined || x === null ? undefined : num(x, what)
  const list = (x: unknown, what: string): unknown[] => Array.isArray(x) && x.length <= MAX_LIST ? x : bad(`${what} is not a list`)
  const t: TaskRecord = {
    id,
    owner: str(m.owner, 'owner', 256),
    ownerHost: str(m.ownerHost ?? '', 'ownerHost', 256),
    argv: list(m.argv, 'argv').map((a, i) => str(a, `argv[${i}]`, 128 * 1024)),
    state: oneOf(m.state, 'state', TASK_STATES),
    created: num(m.created, 'created'),
    deps: list(m.deps ?? [], 'deps').map((d, i) => {
      const o = obj(d, `deps[${i}]`)
      const depId = str(o.id, `deps[${i}].id`, 16)
      if (!ID_RE.test(depId)) bad(`deps[${i}].id is not a task id`)
      return { kind: oneOf(o.kind, `deps[${i}].kind`, DEP_KINDS), name: str(o.name, `deps[${i}].name`, 256), id: depId }
    }),
    retries: int(m.retries ?? 0, 'retries', 0, 1000),
    attempts: list(m.attempts ?? [], 'attempts').map((a, i) => {
      const o = obj(a, `attempts[${i}]`)
      const at: TaskAttempt = { peer: str(o.peer, 'peer', 256), host: str(o.host ?? '', 'host', 256), started: num(o.started, 'started') }
      const ended = optNum(o.ended, 'ended'); if (ended !== undefined) at.ended = ended
      if (o.state !== undefined && o.state !== null) at.state = oneOf(o.state, 'state', TASK_STATES)
      const code = optNum(o.exitCode, 'exitCode'); if (code !== undefined) at.exitCode = code
      const error = optStr(o.error, 'error', 4096); if (error !== undefined) at.error = error
      const logFrom = optNum(o.logFrom, 'logFrom'); if (logFrom !== undefined) at.logFrom = logFrom
      if (typeof o.began === 'boolean') at.began = o.began
      return at
    }),
    attached: m.attached === true,
    children: list(m.children ?? [], 'children').map((c, i) => {
      const cid = str(c, `children[${i}]`, 16)
      if (!ID_RE.test(cid)) bad(`children[${i}] is not a task id`)
      return cid
    })
  }
  const name = optStr(m.name, 'name', 256); if (name !== undefined) t.name = name
  const parent = optStr(m.parent, 'parent', 16); if (parent !== undefined) { if (!ID_RE.test(parent)) bad('parent is not a task id'); t.parent = parent }
  const exitCode = optNum(m.exitCode, 'exitCode'); if (exitCode !== undefined) t.exitCode = exitCode
  const error = optStr(m.error, 'error', 4096); if (error !== undefined) t.error = error
  const started = optNum(m.started, 'started'); if (started !== undefined) t.started = started
  const ended = optNum(m.ended, 'ended'); if (ended !== undefined) t.ended = ended
  const peer = optStr(m.peer, 'peer', 256); if (peer !== undefined) t.peer = peer
  const submitter = optStr(m.submitter, 'submitter', 256); if (submitter !== undefined) t.submitter = submitter
  const user = optStr(m.user, 'user', 256); if (user !== undefined) t.user = user
  const host = optStr(m.host, 'host', 256); if (host !== undefined) t.host = host
  if (m.shard !== undefined && m.shard !== null) {
    const s = obj(m.shard, 'shard')
    t.shard = { index: int(s.index, 'shard.index', 0, 1_000_000), count: int(s.count, 'shard.count', 1, 1_000_000) }
  }
  const timeoutMs = optNum(m.timeoutMs, 'timeoutMs'); if (timeoutMs !== undefined) t.timeoutMs = timeoutMs
  if (m.history !== undefined && m.history !== null) {
    t.history = list(m.history, 'history').slice(-MAX_TASK_CHANGES).map((h, i) => {
      const o = obj(h, `history[${i}]`)
      return { at: num(o.at, 'at'), state: oneOf(o.state, 'state', TASK_STATES), why: str(o.why, 'why', 4096) }
    })
  }
  return t
}

export function isTaskId (s: string): boolean {
  return ID_RE.test(s)
}
