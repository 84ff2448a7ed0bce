/**
 * `vgrid task …` from any member: `/vgrid/task/1.0.0` lets an agent ask the others for their
 * task records, and ask a task's owner for its log, to cancel it or to wait for it. A list
 * is every member's records put together (a sub-task may be owned by the member that ran
 * its parent); an id prefix is looked up on this agent first, then on every member; a name
 * on every member, nearest scope first (names.ts).
 *
 * Requests (one per stream): `{ t: 'list' }` → `{ t: 'tasks', tasks }`; `{ t: 'find', prefix }`
 * → `{ t: 'tasks', tasks }`; `{ t: 'log', id, follow, stderrOnly }` → `{ t: 'log', fd, data }`…
 * `{ t: 'task', task }`; `{ t: 'cancel', id }` and `{ t: 'wait', id }` → `{ t: 'task', task }`;
 * `{ t: 'named', name, workspace? }` → `{ t: 'named', submissions }`. Any may be answered
 * `{ t: 'error', error }`.
 */
import { getMaxListeners, setMaxListeners } from 'node:events'
import { VgridError, toWire, fromWire } from '../../common/errors.js'
import { createLogger } from '../../common/log.js'
import type { FrameChannel } from '../../common/channel.js'
import { obj, bytes, bad, oneOf } from '../../common/validate.js'
import { sleep, withTimeout } from '../../common/timeout.js'
import type { Grid } from '../../grid/index.js'
import { MAX_DATA_CHUNK_BYTES } from '../../protocol/session.js'
import type { TaskManager } from './manager.js'
import { isFinal, parseTaskRecord, type TaskRecord } from './types.js'
import { NAME_OFFER_PER_SCOPE, NAME_SCOPES, pickNamed, type NamedSubmission } from './names.js'
import { TASK_PROTOCOL, TASK_MAX_FRAME_BYTES, parseTaskRequest, type TaskRequest } from '../../protocol/tasks.js'

export { TASK_PROTOCOL, TASK_MAX_FRAME_BYTES }

const log = createLogger('tasks')
/** Node's warning threshold for the listeners of one emitter or signal. */
const DEFAULT_MAX_LISTENERS = 10
const ASK_TIMEOUT_MS = 3_000
const REQUEST_TIMEOUT_MS = 10_000
/**
 * How long `task wait` on another member's task keeps trying after it lost that owner: a
 * restart (the records survive it) takes seconds, and the task goes on meanwhile.
 */
export const OWNER_RETURN_MS = 60_000
const OWNER_RETRY_MS = 1_000

/**
 * A member answers only for the tasks it owns: a record that names another owner is not
 * taken from it (where a task is cancelled, waited for or read rests on that field).
 */
function ownedBy (peer: string, t: TaskRecord): boolean {
  if (t.owner === peer) return true
  log.warn(`${peer} sent a record of task ${t.id} that names another owner (${t.owner}): ignored`)
  return false
}

function parseTasks (raw: unknown, peer: string): TaskRecord[] {
  const m = obj(raw, 'reply')
  if (m.t === 'error') throw fromWire(m.error)
  if (m.t !== 'tasks' || !Array.isArray(m.tasks)) bad('expected a list of tasks')
  return m.tasks.map(parseTaskRecord).filter((t) => ownedBy(peer, t))
}

/** Submissions offered per member at most: NAME_OFFER_PER_SCOPE for each scope. */
const MAX_NAMED_OFFERS = NAME_SCOPES.length * NAME_OFFER_PER_SCOPE

function parseNamed (raw: unknown, peer: string): NamedSubmission[] {
  const m = obj(raw, 'reply')
  if (m.t === 'error') throw fromWire(m.error)
  if (m.t !== 'named' || !Array.isArray(m.submissions) || m.submissions.length > MAX_NAMED_OFFERS) bad('expected the submissions of a name')
  return m.submissions.map((v, i) => {
    const s = obj(v, `submissions[${i}]`)
    if (!Array.isArray(s.tasks)) bad(`submissions[${i}].tasks is not a list`)
    // another member's task is never in this agent's own submissions
    const scope = oneOf(s.scope, 'scope', ['workspace', 'grid'] as const)
    return { scope, tasks: s.tasks.map(parseTaskRecord).filter((t) => ownedBy(peer, t)) }
  }).filter((s) => s.tasks.length > 0)
}

/** Several submissions of `name` are equally near: the user names one by its id. */
function ambiguousName (name: string, subs: TaskRecord[][]): VgridError {
  const shown = subs.slice(0, 5).map((tasks) => {
    const t = tasks[0]!
    const what = tasks.length > 1 ? `${tasks.length} shards` : t.state
    return `  ${t.id.slice(0, 12)}  ${what}  on ${t.host ?? t.ownerHost}  created ${new Date(t.created).toISOString().slice(0, 19).replace('T', ' ')} UTC`
  })
  return new VgridError('ERR_AMBIGUOUS_TASK', `${subs.length} tasks named ${name} are equally near:\n${shown.join('\n')}${subs.length > 5 ? '\n  …' : ''}`,
    'give the id of the one you mean (a unique prefix will do)')
}

/** Aborted when the other end goes away (it sends nothing after its request). */
function goneSignal (channel: FrameChannel): AbortSignal {
  const ac = new AbortController()
  channel.recv().then(() => { ac.abort() }, () => { ac.abort() })
  return ac.signal
}

/** The handler of TASK_PROTOCOL: another member asks about the tasks this one owns. */
export function serveTaskProtocol (tasks: TaskManager): (channel: FrameChannel, remotePeer: string) => Promise<void> {
  return async (channel, remotePeer) => {
    try {
      const req = parseTaskRequest(await withTimeout(channel.recv(), REQUEST_TIMEOUT_MS, 'no task request in time'))
      switch (req.t) {
        case 'list': await channel.send({ t: 'tasks', tasks: tasks.list() }); break
        case 'find': await channel.send({ t: 'tasks', tasks: tasks.find(req.prefix) }); break
        case 'named': await channel.send({ t: 'named', submissions: tasks.namedSubmissions(req.name, { asker: remotePeer, ...(req.workspace !== undefined ? { workspace: req.workspace } : {}) }) }); break
        // remotePeer is the peer id the connection authenticated: the cancel rule rests on it.
        case 'cancel': await channel.send({ t: 'task', task: tasks.cancelFor(req.id, remotePeer) }); break
        case 'wait':
          log.debug(`${remotePeer} waits for task ${req.id}`)
          await channel.send({ t: 'task', task: await tasks.wait(req.id, goneSignal(channel)) })
          break
        case 'log': {
          const task = await tasks.streamLog(req.id, req.follow, req.stderrOnly, async (f) => { await channel.send({ t: 'log', fd: f.fd, data: f.data }) }, goneSignal(channel))
          await channel.send({ t: 'task', task })
          break
        }
      }
    } catch (err) {
      if (!channel.closed) {
        if (!(err instanceof VgridError)) log.warn(`a task request from ${remotePeer} failed`, err)
        await channel.send({ t: 'error', error: toWire(err) }).catch(() => {})
      }
    } finally {
      await channel.close().catch(() => {})
    }
  }
}

/**
 * How `vgrid task show|log|cancel|wait` names its task: `ref` as typed, from the caller's
 * workspace (the nearest scope of a name); or, for a guest, the ids of the sub-tasks of its
 * own that `ref` names, found already (a guest sees nothing else).
 */
export type TaskLookup = { ref: string, workspace?: string } | { ref: string, ids: string[] }

/** The control socket's `task-*` requests, answered for the whole grid. */
export class TaskQueries {
  constructor (private readonly grid: Grid, private readonly tasks: TaskManager) {}

  private others (): string[] {
    return this.grid.view().filter((p) => !p.self).map((p) => p.peer)
  }

  /** One request to `peer`, its one reply read by `parse`. */
  private async request<T> (peer: string, req: TaskRequest, parse: (raw: unknown, peer: string) => T): Promise<T> {
    const ch = await this.grid.open(peer, TASK_PROTOCOL, { maxFrameBytes: TASK_MAX_FRAME_BYTES })
    try {
      await ch.send(req)
      return parse(await withTimeout(ch.recv(), ASK_TIMEOUT_MS, `no answer from ${peer}`), peer)
    } finally {
      ch.destroy()
    }
  }

  private async ask (peer: string, req: TaskRequest): Promise<TaskRecord[]> {
    return await this.request(peer, req, parseTasks)
  }

  /** Every member's records; the members that did not answer, by host. */
  async list (): Promise<{ tasks: TaskRecord[], unreachable: string[] }> {
    const view = this.grid.view()
    const unreachable: string[] = []
    const theirs = await Promise.all(this.others().map(async (peer) => await withTimeout(this.ask(peer, { t: 'list' }), ASK_TIMEOUT_MS, 'no answer').catch(() => {
      unreachable.push(view.find((p) => p.peer === peer)?.resources.host ?? peer)
      return []
    })))
    return { tasks: [...this.tasks.list(), ...theirs.flat()], unreachable }
  }

  /**
   * The task (or the shards of the fan-out) a lookup names. A guest's lookup holds the ids of
   * its own sub-tasks already. Else `ref` is an id or a unique prefix of one, looked up on
   * every member; or a name given with --name (`NAME[i]` for a shard of `vbatch -N`), looked
   * up on every member, nearest scope first (names.ts).
   */
  async resolve (l: TaskLookup): Promise<TaskRecord[]> {
    if ('ids' in l) {
      const found = l.ids.map((id) => this.tasks.get(id)).filter((t): t is TaskRecord => t !== undefined)
      if (found.length === 0) throw new VgridError('ERR_TASK_NOT_FOUND', `no task ${l.ref}`)
      return found
    }
    const ref = l.ref
    const hex = /^[0-9a-f]{1,16}$/.test(ref)
    if (hex) {
      const mine = this.tasks.find(ref)
      if (mine.length === 1 && (mine[0].id === ref)) return mine
      const theirs = await Promise.all(this.others().map(async (peer) => await withTimeout(this.ask(peer, { t: 'find', prefix: ref }), ASK_TIMEOUT_MS, 'no answer').catch(() => [])))
      const all = [...mine, ...theirs.flat()]
      const unique = [...new Map(all.map((t) => [t.id, t])).values()]
      if (unique.length > 1) throw new VgridError('ERR_AMBIGUOUS_TASK', `${unique.length} tasks have ids starting with ${ref}: ${unique.slice(0, 5).map((t) => t.id).join(', ')}`, 'give more digits of the id')
      if (unique.length === 1) return unique
    }
    const named = await this.byName(ref, l.workspace)
    if (named !== undefined) return named
    throw new VgridError('ERR_TASK_NOT_FOUND', hex ? `no task ${ref} on any member of the grid` : `no task named ${ref} on any member of the grid`,
      'see the tasks with `vgrid task list --all`')
  }

  /** The submission `ref` names (NAME, else NAME[i] for shard i), undefined for none. */
  private async byName (ref: string, workspace?: string): Promise<TaskRecord[] | undefined> {
    const whole = await this.named(ref, workspace)
    if (whole !== undefined) return whole
    const shard = /^(.+)\[(\d{1,6})(?:\/\d{1,6})?\]$/.exec(ref)
    if (shard === null) return undefined
    const group = await this.named(shard[1]!, workspace)
    if (group === undefined) return undefined
    const index = Number(shard[2])
    const t = group.find((r) => (r.shard?.index ?? 0) === index)
    if (t === undefined) throw new VgridError('ERR_BAD_ARGUMENT', `${shard[1]!} has no shard ${index}`, `its shards are ${shard[1]!}[0] to ${shard[1]!}[${group.length - 1}]`)
    return [t]
  }

  /** Every member's offers of `name`, and the one submission they mean (names.ts). */
  private async named (name: string, workspace?: string): Promise<TaskRecord[] | undefined> {
    const mine = this.tasks.namedSubmissions(name, { asker: this.grid.peerId, ...(workspace !== undefined ? { workspace } : {}) })
    const req: TaskRequest = { t: 'named', name, ...(workspace !== undefined ? { workspace } : {}) }
    const theirs = await Promise.all(this.others().map(async (peer) => await withTimeout(this.askNamed(peer, req), ASK_TIMEOUT_MS, 'no answer').catch(() => [])))
    const candidates = [...mine, ...theirs.flat()].map((s) => {
      const first = s.tasks[0]!
      // another member's sub-task of a pipeline this agent started from the workspace is of it
      const scope = s.scope !== 'workspace' && workspace !== undefined && first.parent !== undefined && this.tasks.fromWorkspace(first.parent, workspace) ? 'workspace' : s.scope
      return { group: `${first.owner}/${first.id}`, owner: first.owner, created: first.created, live: s.tasks.some((t) => !isFinal(t.state)), scope, tasks: s.tasks }
    })
    const chosen = pickNamed(candidates)
    if (chosen === undefined) return undefined
    if ('pick' in chosen) return chosen.pick.tasks
    throw ambiguousName(name, chosen.tied.map((c) => c.tasks))
  }

  private async askNamed (peer: string, req: TaskRequest): Promise<NamedSubmission[]> {
    return await this.request(peer, req, parseNamed)
  }

  /** One task: a name that means a fan-out must say which shard. */
  private async one (l: TaskLookup): Promise<TaskRecord> {
    const found = await this.resolve(l)
    if (found.length === 1) return found[0]!
    const ref = l.ref
    throw new VgridError('ERR_AMBIGUOUS_TASK', `${ref} names ${found.length} shards (vbatch -N ${found.length})`, `give one: ${ref}[0] to ${ref}[${found.length - 1}], or an id`)
  }

  async show (l: TaskLookup): Promise<TaskRecord> {
    return await this.one(l)
  }

  /** One record; every shard's, in order, when the lookup names a fan-out. */
  async cancel (l: TaskLookup): Promise<TaskRecord | TaskRecord[]> {
    const found = await this.resolve(l)
    const cancelOne = async (t: TaskRecord): Promise<TaskRecord> => t.owner === this.grid.peerId ? this.tasks.cancel(t.id) : await this.oneTask(t.owner, { t: 'cancel', id: t.id })
    if (found.length === 1) return await cancelOne(found[0]!)
    return await Promise.all(found.map(cancelOne))
  }

  /** Once it has ended; with a fan-out, once every shard has. */
  async wait (l: TaskLookup, signal: AbortSignal): Promise<TaskRecord | TaskRecord[]> {
    const found = await this.resolve(l)
    if (found.length === 1) return await this.waitOne(found[0]!, signal)
    // Each shard waited for holds one listener on the client's signal until it ends: a fan-out
    // of 200 is 200 at once, by design, not the leak Node's warning (past 10) looks for.
    setMaxListeners(Math.max(getMaxListeners(signal), found.length + DEFAULT_MAX_LISTENERS), signal)
    return await Promise.all(found.map(async (t) => await this.waitOne(t, signal)))
  }

  private async waitOne (t: TaskRecord, signal: AbortSignal): Promise<TaskRecord> {
    if (t.owner === this.grid.peerId) {
      log.debug(`a command here waits for task ${t.id}`)
      return await this.tasks.wait(t.id, signal)
    }
    let deadline: number | undefined
    for (;;) {
      try {
        return await this.oneTask(t.owner, { t: 'wait', id: t.id }, signal)
      } catch (err) {
        if (!(err instanceof VgridError) || err.code !== 'ERR_PEER_LOST' || signal.aborted) throw err
        deadline ??= Date.now() + OWNER_RETURN_MS
        if (Date.now() >= deadline) {
          throw new VgridError('ERR_PEER_LOST', `lost ${t.ownerHost}, which owns task ${t.id.slice(0, 12)}, and it did not come back within ${OWNER_RETURN_MS / 1000} s`,
            `ask again once it is back: vgrid task wait ${t.id}`)
        }
        log.debug(`waiting for ${t.ownerHost} to come back: ${err.message}`)
        await sleep(OWNER_RETRY_MS, signal)
        if (signal.aborted) throw err
      }
    }
  }

  async log (l: TaskLookup, follow: boolean, stderrOnly: boolean, client: FrameChannel, signal: AbortSignal): Promise<TaskRecord> {
    const t = await this.one(l)
    const send = async (fd: 1 | 2, data: Uint8Array): Promise<void> => { await client.send({ t: 'log', fd, data }) }
    if (t.owner === this.grid.peerId) return await this.tasks.streamLog(t.id, follow, stderrOnly, async (f) => { await send(f.fd, f.data) }, signal)
    const ch = await this.grid.open(t.owner, TASK_PROTOCOL, { maxFrameBytes: TASK_MAX_FRAME_BYTES })
    const onAbort = (): void => { ch.destroy() }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      await ch.send({ t: 'log', id: t.id, follow, stderrOnly })
      for (;;) {
        const raw = await ch.recv()
        if (raw === undefined) throw new VgridError('ERR_PEER_LOST', `${t.ownerHost} closed the log stream`)
        const m = obj(raw, 'reply')
        if (m.t === 'error') throw fromWire(m.error)
        if (m.t === 'task') return parseTaskRecord(m.task)
        if (m.t !== 'log') bad('expected a log frame')
        await send(m.fd === 2 ? 2 : 1, bytes(m.data, 'data', MAX_DATA_CHUNK_BYTES * 4))
      }
    } finally {
      signal.removeEventListener('abort', onAbort)
      ch.destroy()
    }
  }

  private async oneTask (peer: string, req: TaskRequest, signal?: AbortSignal): Promise<TaskRecord> {
    const ch = await this.grid.open(peer, TASK_PROTOCOL, { maxFrameBytes: TASK_MAX_FRAME_BYTES })
    const onAbort = (): void => { ch.destroy() }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await ch.send(req)
      const raw = req.t === 'wait' ? await ch.recv() : await withTimeout(ch.recv(), REQUEST_TIMEOUT_MS, `no answer from ${peer}`)
      if (raw === undefined) throw new VgridError('ERR_PEER_LOST', 'the owner of the task closed the stream')
      const m = obj(raw, 'reply')
      if (m.t === 'error') throw fromWire(m.error)
      if (m.t !== 'task') bad('expected a task')
      const t = parseTaskRecord(m.task)
      if (t.owner !== peer) bad('the record names another owner')
      return t
    } finally {
      signal?.removeEventListener('abort', onAbort)
      ch.destroy()
    }
  }
}

export { goneSignal }
