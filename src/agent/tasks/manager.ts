/**
 * The task system of one agent (DESIGN.md §3). This agent owns the records of the tasks
 * submitted through it: it keeps them in `$VGRID_HOME/tasks/` (`records.jsonl`, a line
 * appended on every change, see journal.ts; and `<id>.log`, the output as it came). Only the
 * tasks not yet ended are whole in memory; an ended one keeps a TaskKey (what names,
 * dependencies and sub-task lookups need) and is read back from the journal when asked for.
 * It resolves their dependencies, and places each through the same path as `vrun` (run.ts),
 * reading its events instead of a terminal. Tasks submitted from inside a command running
 * here become its children: the executor holds the command's exit until they have all ended
 * (ChildTracker).
 *
 * State machine: pending (dependencies) → queued (capacity) → running → waiting-children →
 * succeeded | failed | cancelled | upstream-failed | lost. A restart of the agent loses the
 * sessions of running tasks: they are placed again when they have retries left, else lost.
 */
import fs from 'node:fs'
import path from 'node:path'
import { VgridError } from '../../common/errors.js'
import { createLogger } from '../../common/log.js'
import type { RunEvent, RunSpec } from '../../protocol/session.js'
import { acceptsFrom, assignGang, candidates, pinnedCandidates, resolvePinned, impossibleGang } from '../../grid/placement.js'
import type { WorkspaceRef } from '../../fs-sync/index.js'
import { Run, reattachRun, isRefusal, newTaskId, wakeUp, USER, AttemptGone, VIEW_SETTLE_MS, type ChildTracker, type Guest, type Placer, type RunContext } from '../run/index.js'
import { GangGate, type GangSeat } from '../claim.js'
import { LOST_FENCE_MS } from '../watchdog.js'
import { requestShape } from '../run-queue.js'
import type { BatchRequest } from '../../protocol/control.js'
import { TaskLog, type LogFrame } from './log.js'
import { RecordJournal } from './journal.js'
import { EndedTasks, keyOf, type TaskKey } from './keys.js'
import { offerCandidates, type NameCandidate, type NameScope, type NamedSubmission } from './names.js'
import { depMet, depsVerdict, type StateOf } from './deps.js'
import { serialize, storedOf, type Stored } from './stored.js'
import { bySubmission, isFinal, mayCancel, parseTaskRecord, MAX_TASK_CHANGES, type DepKind, type TaskDep, type TaskRecord, type TaskState } from './types.js'
import { shortPeerId } from '../../common/peer-id.js'

const log = createLogger('tasks')
/** Records kept and listed; the ones that ended first are forgotten past this. */
export const MAX_TASKS = 20_000
const GANG_PORT_BASE = 29500
/** Entry.saving of a record with no write due: one promise for all, not one per record kept. */
const SAVED: Promise<void> = Promise.resolve()
/**
 * A detached task's executor that left this agent's view is given up after this long (plus
 * the view's settling time after a start): then its attempt is lost. While this agent sees no
 * other member at all, the fault is its own network, and it waits on.
 */
export const REATTACH_ABSENT_MS = 12_000
/** Between two tries to re-attach to an executor that is in the view. */
export const REATTACH_RETRY_MS = 1_000
/** Strings shared between records (TaskManager.word): at most this many, of at most this length. */
const MAX_WORDS = 4096
const WORD_MAX_CHARS = 200
/** A record that could not be written (a full disk) is tried again after this long. */
const SAVE_RETRY_MS = 10_000
/** Changes kept at the start of a task's history when it is trimmed. */
const FIRST_CHANGES_KEPT = 10
/**
 * Tasks of one request shape being placed at once (started, not yet on a member). The rest
 * wait their turn in submission order: a thousand queued tasks must not all chase every free
 * core the view shows (each refusal costs a stream), and the first submitted go first.
 */
export const PLACING_PER_SHAPE = 8

/** For whom a task is submitted: TaskRecord's `submitter` and `user`. */
interface Origin { peer: string, user: string }

/** Whether a task lost with its executor must still wait before it is placed again. */
function fenced (e: Entry): boolean {
  return e.notBefore !== undefined && e.notBefore > Date.now()
}

interface Entry extends Stored {
  /** Not placed before this time (ms since the epoch): its lost attempt may still be ending. */
  notBefore?: number
  log: TaskLog
  /** The run of its attempt being placed or followed now. */
  run?: Run
  cancelRequested: boolean
  timedOut: boolean
  timer?: NodeJS.Timeout
  /** Resolved when the task reaches a final state. */
  waiters: Array<(t: TaskRecord) => void>
  saving: Promise<void>
  childFailed: number
  /** An attached run (vrun) waiting for its dependencies: called when they are met. */
  onReady?: () => void
  /** Its run has begun and is not yet placed on a member. */
  placing: boolean
  /** Its request shape (requestShape): spec and `on` never change, so it is computed once. */
  shape: string
  /** A save is due and has not yet serialized the record. */
  saveQueued: boolean
  /** Its attempt runs on, detached, on a member this agent is finding again: not to be placed. */
  reattaching: boolean
  /** Its last write failed: the journal holds an older version (tried again, SAVE_RETRY_MS). */
  unsaved: boolean
}

export class TaskManager implements ChildTracker {
  /** Tasks not yet ended, and those ended but not yet retired (retire()). */
  private readonly live = new Map<string, Entry>()
  /** Ended tasks' keys, in the order they were retired: the first are forgotten first (forgetOld). */
  private readonly ended = new EndedTasks((s) => this.word(s))
  /**
   * What evaluate() looks at, kept as tasks change so that it costs what it starts, not the
   * number of tasks: the tasks waiting for dependencies; the queued ones not being run, per
   * request shape in the order they became queued; and how many of each shape are placing.
   */
  private readonly pending = new Set<Entry>()
  private readonly waiting = new Map<string, Set<Entry>>()
  private readonly gangsWaiting = new Set<Entry>()
  private readonly placingByShape = new Map<string, number>()
  /**
   * Commands running on this machine that may submit sub-tasks: task id → its children here,
   * and the member (and user) their sub-tasks are submitted for.
   */
  private readonly runningHere = new Map<string, { kids: Set<string>, from: Origin }>()
  private ctx!: RunContext
  private placer!: Placer
  /**
   * One copy of each short string many records hold (a reason, an executor's peer id and
   * host): built per event, each of the 20,000 records an owner keeps had its own.
   */
  private readonly words = new Map<string, string>()

  /** Who is told of each change of a record (onTaskChange). */
  private readonly changeListeners = new Set<(task: TaskRecord) => void>()

  private constructor (private readonly dir: string, private readonly self: { peer: string, host: string }, private readonly journal: RecordJournal) {}

  /**
   * Calls `listener` with a task's record each time it is written (state, placement, exit;
   * changes made in one turn of the event loop come once). Returns the unsubscribe.
   */
  onTaskChange (listener: (task: TaskRecord) => void): () => void {
    this.changeListeners.add(listener)
    return () => { this.changeListeners.delete(listener) }
  }

  /** Loads the records of `$home/tasks`; call `start` once the agent can place work. */
  static async open (home: string, self: { peer: string, host: string }): Promise<TaskManager> {
    const dir = path.join(home, 'tasks')
    await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 })
    const { journal, entries } = RecordJournal.open(dir)
    const m = new TaskManager(dir, self, journal)
    const loaded: Entry[] = []
    const ended: Array<{ stored: Stored, at: number }> = []
    for (const raw of entries.splice(0)) {
      try {
        const stored = storedOf(raw)
        const r = stored.record
        if (isFinal(r.state)) ended.push({ stored, at: r.ended ?? r.created })
        else loaded.push(m.entry(stored, TaskLog.open(dir, r.id)))
      } catch (err) {
        log.warn('skipped an unreadable task record', err)
        const id = (raw.record as { id?: unknown } | undefined)?.id
        if (typeof id === 'string') journal.drop(id)
      }
    }
    for (const { stored } of ended.sort((a, b) => a.at - b.at)) m.ended.add(stored)
    for (const e of loaded.sort((a, b) => a.record.created - b.record.created)) m.add(e)
    // the journal may still hold records forgotten since its last compaction
    m.forgetOld()
    return m
  }

  /**
   * Begins placing work: tasks a restart interrupted are placed again or marked lost.
   * `interrupted`: tasks whose commands the previous run of this agent left running (and the
   * agent stopped at start): they had started even if their records were not saved since.
   */
  start (ctx: RunContext, placer: Placer, interrupted: readonly string[] = []): void {
    this.ctx = ctx
    this.placer = placer
    const started = new Set(interrupted)
    for (const e of this.live.values()) {
      let s = e.record.state
      if (isFinal(s)) continue
      const open = e.record.attempts.at(-1)
      // Its command ran here, whatever the record had time to say: that attempt counts, and the
      // task was running (killed before its `started` was written, it would be placed again).
      if (started.has(e.record.id) && open !== undefined && open.ended === undefined) {
        open.began = true
        if (s === 'pending' || s === 'queued') e.record.state = s = 'running'
      }
      if (started.has(e.record.id) && (s === 'pending' || s === 'queued') && e.record.attempts.every((a) => a.ended !== undefined)) {
        // Its command ran here before the record caught up: that is an attempt too.
        e.record.attempts.push({ peer: this.self.peer, host: this.self.host, started: e.record.created })
        e.record.state = s = 'running'
      }
      const a = e.record.attempts.at(-1)
      if (!e.record.attached && a !== undefined && a.ended === undefined && a.peer !== this.self.peer) {
        // Placed on another member, detached: it runs on there (held.ts); this agent finds it again.
        this.note(e, s, `the owning agent restarted; finding the attempt on ${a.host} again`)
        // its --timeout still counts from its first placement
        this.armTimeout(e, e.record.attempts[0]!.started)
        this.reattach(e)
        continue
      }
      // An attempt here (or one placed before the restart, maybe still syncing) ended with it.
      if (a !== undefined && a.ended === undefined) { a.ended = Date.now(); a.state = 'lost'; a.error = 'the owning agent restarted' }
      if (e.record.attached) {
        // a vrun: its terminal went with the agent
        this.finish(e, 'lost', { error: 'the owning agent restarted while it ran' })
      } else if (s === 'running' || s === 'waiting-children') {
        if (spentAttempts(e.record) > e.record.retries) {
          this.finish(e, 'lost', { error: 'the owning agent restarted while it ran' })
        } else {
          this.setState(e, 'queued', 'the owning agent restarted while it ran: placed again')
        }
      }
    }
    this.evaluate()
  }

  private entry (s: Stored, taskLog: TaskLog): Entry {
    // Field by field, not `{ ...s, … }`: V8 gave every object made by that spread a hidden
    // class of its own (~500 bytes each, a third of what a finished task held in memory).
    const e: Entry = {
      record: s.record, spec: s.spec, group: s.group, gang: s.gang, log: taskLog, cancelRequested: false, timedOut: false,
      waiters: [], saving: SAVED, childFailed: 0, placing: false, shape: requestShape(s.spec, s.on), saveQueued: false, reattaching: false, unsaved: false
    }
    if (s.on !== undefined) e.on = s.on
    if (s.workspace !== undefined) e.workspace = s.workspace
    if (s.guest !== undefined) e.guest = s.guest
    return e
  }

  private add (e: Entry): void {
    this.live.set(e.record.id, e)
    this.track(e)
  }

  /** Every task kept: the ended ones' keys, then a key made for each one not yet retired. */
  private * keys (): Generator<TaskKey> {
    yield * this.ended.values()
    for (const e of this.live.values()) yield keyOf(e)
  }

  /**
   * Keeps only the key of an ended task, once nothing more will be done with its entry: its
   * record is written, its log flushed, its session over and its waiters told.
   */
  private retire (e: Entry): void {
    const id = e.record.id
    if (!isFinal(e.record.state) || e.saveQueued || e.unsaved || e.run !== undefined || !e.log.idle || e.waiters.length > 0) return
    if (this.live.get(id) !== e) return
    this.live.delete(id)
    this.track(e)
    this.ended.add(e)
  }

  private readonly stateOfFn: StateOf = (id) => this.stateOf(id)

  private stateOf (id: string): TaskState | undefined {
    return this.live.get(id)?.record.state ?? this.ended.get(id)?.state
  }

  /** An ended task's record, read back from the journal; undefined when it cannot be. */
  private readBack (id: string): TaskRecord | undefined {
    const raw = this.journal.read(id)
    if (raw === undefined) return undefined
    try {
      return parseTaskRecord(raw.record)
    } catch (err) {
      log.warn(`task ${id}'s record in the journal is unreadable`, err)
      return undefined
    }
  }

  /** The records of these ended tasks, read back from the journal together. */
  private readBackMany (ids: Iterable<string>): TaskRecord[] {
    const out: TaskRecord[] = []
    for (const raw of this.journal.readMany(ids)) {
      try { out.push(parseTaskRecord(raw.record)) } catch {}
    }
    return out
  }

  /** Files the task where evaluate() looks for it; call after any change of its state or run. */
  private track (e: Entry): void {
    const s = e.record.state
    if (s === 'pending') this.pending.add(e)
    else this.pending.delete(e)
    const idle = s === 'queued' && e.run === undefined && !e.record.attached && !e.reattaching
    if (idle && e.gang) this.gangsWaiting.add(e)
    else this.gangsWaiting.delete(e)
    let q = this.waiting.get(e.shape)
    if (idle && !e.gang) {
      if (q === undefined) this.waiting.set(e.shape, q = new Set())
      q.add(e)
    } else if (q !== undefined) {
      q.delete(e)
      if (q.size === 0) this.waiting.delete(e.shape)
    }
  }

  // ── submitting ─────────────────────────────────────────────────────────────────────────

  /** `vbatch`: checks everything first (nothing is created on an error), then records and starts. */
  submit (b: BatchRequest): string[] {
    if (b.parent !== undefined && !this.runningHere.has(b.parent)) {
      throw new VgridError('ERR_BAD_ARGUMENT', `the parent task ${b.parent} (VGRID_TASK_ID) is not running on this agent`,
        'sub-tasks are submitted from inside a running task, through the agent that runs it')
    }
    const view = this.ctx.grid.view()
    try {
      // A member that left lately is waited for (MemberAway is ERR_NO_CAPACITY); an unknown name is refused.
      if (b.on !== undefined) pinnedCandidates(resolvePinned(view, this.ctx.grid.departed(), b.on), b.spec)
      else candidates(view, b.spec)
    } catch (err) {
      if (!(err instanceof VgridError) || err.code !== 'ERR_NO_CAPACITY') throw err
    }
    if (b.gang && b.shards > 1 && b.on !== undefined) {
      throw new VgridError('ERR_BAD_ARGUMENT', '--gang places its shards on several members: it cannot be combined with --on')
    }
    // All its shards start at once or none does: refused now if the grid could never hold them, as a single impossible task is.
    if (b.gang && b.shards > 1) {
      const never = impossibleGang(view.filter((p) => acceptsFrom(p, this.self.peer)), b.spec, b.shards)
      if (never !== undefined) throw never
    }
    const deps = this.resolveDeps(b)
    const from = this.originOf(b.parent)
    const now = Date.now()
    const ids = Array.from({ length: b.shards }, () => newTaskId())
    const group = ids[0]
    ids.forEach((id, index) => {
      const env = { ...b.spec.env }
      if (b.shards > 1) Object.assign(env, { VGRID_SHARD_INDEX: String(index), VGRID_SHARD_COUNT: String(b.shards) })
      const record: TaskRecord = {
        id, owner: this.self.peer, ownerHost: this.self.host, submitter: from.peer, user: from.user, argv: b.spec.argv, state: 'pending', created: now,
        deps, retries: b.retries, attempts: [], attached: false, children: [], history: [{ at: now, state: 'pending', why: 'submitted' }]
      }
      if (b.name !== undefined) record.name = b.name
      if (b.parent !== undefined) record.parent = b.parent
      if (b.shards > 1) record.shard = { index, count: b.shards }
      if (b.timeoutMs !== undefined) record.timeoutMs = b.timeoutMs
      const stored: Stored = { record, spec: { ...b.spec, env }, group, gang: b.gang && b.shards > 1 }
      if (b.on !== undefined) stored.on = b.on
      if (b.workspace !== undefined) stored.workspace = b.workspace
      if (b.guest === true) stored.guest = true
      const e = this.entry(stored, new TaskLog(this.dir, id))
      this.add(e)
      if (b.parent !== undefined) this.runningHere.get(b.parent)!.kids.add(id)
      // On disk before it can start: a task is never lost from the records.
      this.writeRecord(e)
    })
    this.forgetOld()
    this.evaluate()
    return ids
  }

  /**
   * A `vrun` recorded as a task: one from inside a task (its child), or one with --name or
   * --after…. Resolves once its dependencies are met (ERR_UPSTREAM_FAILED if they never will
   * be); `observe` sees the run's events. Undefined: a plain vrun, not recorded.
   */
  async attach (req: { spec: RunSpec, parent?: string, name?: string, after?: BatchRequest['after'], workspace?: WorkspaceRef }): Promise<{ id: string, observe: (ev: RunEvent) => void, ended: (err?: unknown) => void } | undefined> {
    const kids = req.parent !== undefined ? this.runningHere.get(req.parent)?.kids : undefined
    const after = req.after ?? []
    if (kids === undefined && req.name === undefined && after.length === 0) return undefined
    const parent = kids !== undefined ? req.parent : undefined
    const deps = this.resolveDeps({ after, ...(parent !== undefined ? { parent } : {}), ...(req.workspace !== undefined ? { workspace: req.workspace } : {}) })
    const id = newTaskId()
    const from = this.originOf(parent)
    const record: TaskRecord = {
      id, owner: this.self.peer, ownerHost: this.self.host, submitter: from.peer, user: from.user, argv: req.spec.argv, state: 'pending', created: Date.now(),
      deps, retries: 0, attempts: [], attached: true, children: [], history: [{ at: Date.now(), state: 'pending', why: 'submitted (vrun)' }]
    }
    if (parent !== undefined) record.parent = parent
    if (req.name !== undefined) record.name = req.name
    const stored: Stored = { record, spec: req.spec, group: id, gang: false }
    if (req.workspace !== undefined) stored.workspace = req.workspace
    const e = this.entry(stored, new TaskLog(this.dir, id))
    this.add(e)
    kids?.add(id)
    this.save(e)
    await new Promise<void>((resolve, reject) => {
      e.onReady = resolve
      e.waiters.push((t) => { reject(new VgridError('ERR_UPSTREAM_FAILED', t.error ?? 'a dependency did not end as required')) })
      this.evaluate()
    })
    return {
      id,
      observe: (ev) => { this.onEvent(e, ev) },
      ended: (err) => {
        if (isFinal(e.record.state)) return
        this.finish(e, 'lost', { error: err instanceof Error ? err.message : 'the vrun ended before the command did' })
      }
    }
  }

  private siblings (parent: string | undefined, workspace: string): TaskKey[] {
    return [...this.keys()].filter((k) => parent !== undefined
      ? k.parent === parent
      : k.parent === undefined && k.owner === this.self.peer && k.workspace === workspace)
  }

  private resolveDeps (b: Pick<BatchRequest, 'after' | 'parent' | 'workspace'>): TaskDep[] {
    if (b.after.length === 0) return []
    const sibs = this.siblings(b.parent, b.workspace?.dir ?? '')
    const deps: TaskDep[] = []
    for (const a of b.after) {
      const named = sibs.filter((k) => k.name === a.name)
      if (named.length === 0) {
        throw new VgridError('ERR_BAD_ARGUMENT', `no task named ${JSON.stringify(a.name)} to wait for`,
          b.parent !== undefined
            ? 'dependencies name sibling tasks: ones submitted from the same parent task, before this one'
            : 'dependencies name tasks submitted before this one, through this agent, from the same workspace')
      }
      const newest = named.reduce((x, y) => (y.created > x.created ? y : x))
      for (const k of sibs) if (k.group === newest.group) deps.push({ kind: a.kind, name: a.name, id: k.id })
    }
    return deps
  }

  // ── the state machine ──────────────────────────────────────────────────────────────────

  /** Starts what can start, fails what never will; repeats while anything changed. */
  private evaluate (): void {
    // Stopping: nothing new starts (it would only be stopped at once); the next start places it.
    if (this.ctx === undefined || this.ctx.shutdown.aborted) return
    for (let changed = true; changed;) {
      changed = false
      for (const e of [...this.pending]) {
        if (e.record.state !== 'pending') continue
        const verdict = depsVerdict(e.record.deps, this.stateOfFn)
        if (verdict === 'wait') continue
        changed = true
        if (verdict === 'never') {
          const which = e.record.deps.find((d) => d.kind !== 'fail' && depMet(d, this.stateOfFn) === false) ?? e.record.deps.find((d) => depMet(d, this.stateOfFn) === false)
          this.finish(e, 'upstream-failed', { error: which !== undefined ? `${which.name} (${which.id.slice(0, 12)}) did not end as --after${which.kind === 'any' ? '' : `-${which.kind}`} requires` : 'a dependency was not met' })
        } else {
          this.setState(e, 'queued', e.record.deps.length > 0 ? 'its dependencies are met' : 'waiting for a member with room')
          if (e.onReady !== undefined) { const ready = e.onReady; e.onReady = undefined; ready() }
        }
      }
    }
    for (const [shape, queue] of [...this.waiting]) {
      // run() takes each task out of its queue (track), so this reads the front each time.
      for (const e of queue) {
        if ((this.placingByShape.get(shape) ?? 0) >= PLACING_PER_SHAPE) break
        if (fenced(e)) continue
        this.run(e)
      }
    }
    const groups = new Set<string>()
    for (const e of this.gangsWaiting) groups.add(e.group)
    for (const g of groups) this.runGang(g)
  }

  private setState (e: Entry, state: TaskState, why: string): void {
    if (e.record.state !== state) this.note(e, state, why)
    e.record.state = state
    this.track(e)
    this.save(e)
  }

  private word (s: string): string {
    if (s.length > WORD_MAX_CHARS) return s
    const had = this.words.get(s)
    if (had !== undefined) return had
    if (this.words.size >= MAX_WORDS) this.words.clear()
    this.words.set(s, s)
    return s
  }

  /** Writes down a change of state and why (`vgrid task show`), keeping the first and the latest. */
  private note (e: Entry, state: TaskState, why: string): void {
    const h = e.record.history ??= []
    h.push({ at: Date.now(), state, why: this.word(why) })
    if (h.length > MAX_TASK_CHANGES) h.splice(FIRST_CHANGES_KEPT, h.length - MAX_TASK_CHANGES)
  }

  private finish (e: Entry, state: TaskState, o: { exitCode?: number, error?: string } = {}): void {
    if (isFinal(e.record.state)) return
    clearTimeout(e.timer)
    e.reattaching = false
    this.note(e, state, o.error ?? (state === 'cancelled' ? 'cancelled' : o.exitCode !== undefined ? `exited with ${o.exitCode}` : state))
    e.record.state = state
    this.track(e)
    e.record.ended = Date.now()
    if (o.exitCode !== undefined) e.record.exitCode = o.exitCode
    if (o.error !== undefined) e.record.error = o.error
    const a = e.record.attempts.at(-1)
    if (a !== undefined && a.ended === undefined) {
      a.ended = e.record.ended
      a.state = state
      if (o.exitCode !== undefined) a.exitCode = o.exitCode
      if (o.error !== undefined) a.error = o.error
    }
    this.save(e)
    const record = e.record
    void e.log.flushed().then(() => {
      for (const w of e.waiters.splice(0)) w(record)
      this.retire(e)
    })
    // Cancelling a parent cancels its children that have not started yet too.
    if (state === 'cancelled') for (const c of this.childrenOf(e.record.id)) this.cancel(c)
    queueMicrotask(() => { this.evaluate() })
  }

  private childrenOf (id: string): string[] {
    return [...this.keys()].filter((k) => k.parent === id).map((k) => k.id)
  }

  // ── running ────────────────────────────────────────────────────────────────────────────

  private run (e: Entry, extraEnv?: Record<string, string>, on?: string, gang?: GangSeat): void {
    this.setPlacing(e, true)
    const spec = extraEnv !== undefined ? { ...e.spec, env: { ...e.spec.env, ...extraEnv } } : e.spec
    this.armTimeout(e, Date.now())
    this.drive(e, async (run) => {
      // A detached task reads nothing: its stdin is closed at once.
      await this.placer.submit(run, spec, {
        on: on ?? e.on, ...(e.workspace !== undefined ? { workspace: e.workspace } : {}), ...(gang !== undefined ? { gang } : {}), guest: e.guest === true, detach: true
      })
    }, { eof: true, ...(gang !== undefined ? { gang } : {}) })
  }

  /** `--timeout`, counted from `since` (its first placement), unless it is armed already. */
  private armTimeout (e: Entry, since: number): void {
    if (e.record.timeoutMs === undefined || e.timer !== undefined) return
    e.timer = setTimeout(() => { e.timedOut = true; this.stop(e) }, Math.max(0, since + e.record.timeoutMs - Date.now()))
    e.timer.unref()
  }

  /**
   * Reads one session of the task (a placement, or a re-attach) until it ends, then decides:
   * over, placed again, or (a detached attempt whose stream broke) found again.
   */
  private drive (e: Entry, session: (run: Run) => Promise<void>, o: { eof: boolean, gang?: GangSeat }): void {
    const { gang } = o
    const run = new Run(e.record.id)
    e.run = run
    this.track(e)
    if (o.eof) void run.input({ t: 'eof' })
    // Cancelled (or timed out) while its executor was being found again: stopped there once attached.
    if (e.cancelRequested || e.timedOut) void run.input({ t: 'cancel' })
    let lost: VgridError | undefined
    run.on((ev) => {
      if (lost !== undefined || isFinal(e.record.state)) return
      // The executor (or this agent's owner policy) lost the command: placed again below if retries are left.
      if (ev.t === 'error' && ev.error.code === 'ERR_PEER_LOST') { lost = new AttemptGone('ERR_PEER_LOST', ev.error.message); return }
      this.onEvent(e, ev)
    })
    void (async () => {
      const failed = await session(run).then(() => undefined, (err: unknown) => err)
      const err = lost ?? failed
      run.abandon()
      e.run = undefined
      this.track(e)
      this.placed(e)
      if (isFinal(e.record.state)) { this.retire(e); return }
      if (gang !== undefined && err instanceof VgridError && err.code === 'ERR_NO_CAPACITY' && e.record.attempts.every((a) => a.ended !== undefined)) {
        // The gang was not placed at once: every shard waits for the next change of the view.
        this.setState(e, 'queued', 'its gang could not be placed at once')
        const unwatch = this.ctx.grid.onViewChange(() => { unwatch(); this.evaluate() })
        return
      }
      if (this.mayReattach(e, err)) { this.reattach(e, 1); return }
      // A member that could not prepare a re-attached run (its disk, its sandbox): placed elsewhere.
      this.onLost(e, isRefusal(err) ? new AttemptGone('ERR_PEER_LOST', err.message) : err)
    })()
  }

  /**
   * Whether a session that ended with `err` left a detached attempt running on its member: its
   * stream broke while the member is still in the view, or left it just now, or this agent
   * sees nobody at all. An owner that wakes from a freeze sweeps from its view everyone it did
   * not hear from meanwhile, in the same moment as it reads its broken streams and the first
   * news of the others: its executor may be gone from the view a moment before it is back.
   * reattach() gives it REATTACH_ABSENT_MS to be seen again. (A member that stopped tells its
   * runs so, an AttemptGone: lost at once.)
   */
  private mayReattach (e: Entry, err: unknown): boolean {
    if (e.record.attached || this.ctx.shutdown.aborted || e.cancelRequested) return false
    if (!(err instanceof VgridError) || err.code !== 'ERR_PEER_LOST' || err instanceof AttemptGone) return false
    const a = e.record.attempts.at(-1)
    if (a === undefined || a.ended !== undefined || a.peer === this.self.peer) return false
    const view = this.ctx.grid.view()
    if (view.some((p) => p.peer === a.peer) || view.every((p) => p.self)) return true
    return this.ctx.grid.departed().some((d) => d.peer === a.peer && d.leftMsAgo < REATTACH_ABSENT_MS)
  }

  /**
   * Finds a detached attempt again (after this agent restarted, or its stream broke): waits
   * for its member to be in the view, then asks it for what the log lacks and follows it live.
   * A member that no longer has it, or that stays away, loses the attempt (onLost).
   */
  private reattach (e: Entry, round = 0): void {
    const a = e.record.attempts.at(-1)!
    e.reattaching = true
    this.track(e)
    void (async () => {
      let absent: number | undefined
      if (round > 0) await new Promise((resolve) => setTimeout(resolve, REATTACH_RETRY_MS))
      for (;;) {
        if (isFinal(e.record.state) || this.ctx.shutdown.aborted || !e.reattaching) return
        const view = this.ctx.grid.view()
        if (view.some((p) => p.peer === a.peer)) break
        absent ??= Date.now()
        const settle = Date.now() - (this.ctx.startedAt ?? 0) < VIEW_SETTLE_MS ? VIEW_SETTLE_MS : 0
        if (!view.every((p) => p.self) && Date.now() - absent > settle + REATTACH_ABSENT_MS) {
          this.onLost(e, new AttemptGone('ERR_PEER_LOST', `lost ${a.host} (${shortPeerId(a.peer)}) ${e.record.state === 'queued' ? 'before the command started' : 'while the command ran'}: it is no longer in the grid`))
          return
        }
        await wakeUp(this.ctx, REATTACH_RETRY_MS)
      }
      const have = await e.log.receivedSince(a.logFrom ?? 0)
      if (isFinal(e.record.state) || !e.reattaching) return
      log.debug(`re-attaching task ${e.record.id} on ${a.host}, ${have} bytes of output here`)
      this.drive(e, async (run) => {
        await run.drive(async (sink) => await reattachRun(this.ctx, sink, {
          task: e.record.id, peer: a.peer, host: a.host, have, started: e.record.state !== 'queued', startedMs: a.started, ...(e.workspace !== undefined ? { workspace: e.workspace } : {})
        }))
      }, { eof: false })
    })()
  }

  private onEvent (e: Entry, ev: RunEvent): void {
    const r = e.record
    switch (ev.t) {
      case 'refused': {
        // The member could not take it before the command started (no disk space…): no
        // attempt, no retry spent; the run is being placed elsewhere.
        const a = r.attempts.at(-1)
        if (a !== undefined && a.peer === ev.peer && a.ended === undefined) r.attempts.pop()
        e.log.append(2, Buffer.from(`vgrid: ${ev.error.message}; placing it elsewhere\n`), true)
        this.save(e)
        break
      }
      case 'placed': {
        this.placed(e)
        r.peer = this.word(ev.peer)
        r.host = this.word(ev.host)
        const prev = r.attempts.at(-1)
        if (prev !== undefined) {
          // Each attempt's output follows a line that says where and why it runs again.
          e.log.append(2, Buffer.from(`--- attempt ${r.attempts.length + 1} on ${ev.host} (${shortPeerId(ev.peer)})${prev.error !== undefined ? `, after: ${prev.error}` : ''} ---\n`), true)
        }
        r.attempts.push({ peer: r.peer, host: r.host, started: Date.now(), logFrom: e.log.length, began: false })
        this.note(e, r.state, `placed on ${ev.host} (${shortPeerId(ev.peer)})`)
        this.save(e)
        break
      }
      case 'started': {
        const a = r.attempts.at(-1)
        if (a !== undefined) a.began = true
        r.started ??= Date.now()
        this.setState(e, 'running', `started on ${ev.host}`)
        break
      }
      case 'out': e.log.append(ev.fd, ev.data); break
      case 'notice': e.log.append(2, Buffer.from(`vgrid: ${ev.text}\n`), ev.own === true); break
      case 'children':
        for (const id of ev.ids) if (!r.children.includes(id)) r.children.push(id)
        e.childFailed = ev.failed
        if (!ev.done) this.setState(e, 'waiting-children', `the command ended; ${ev.ids.length} sub-task${ev.ids.length === 1 ? '' : 's'} still to end`)
        else this.save(e)
        break
      case 'exit': {
        if (this.ctx.shutdown.aborted && (ev.signal !== undefined || ev.code !== 0) && !e.cancelRequested) {
          // Killed as this agent stops (it runs here), or ended on the stop's SIGTERM with a
          // status of its own: interrupted, not failed.
          this.onLost(e, new VgridError('ERR_PEER_LOST', `the owning agent stopped (${ev.signal})`))
          break
        }
        const ok = ev.code === 0 && e.childFailed === 0
        const error = e.timedOut
          ? `timed out after ${Math.round((r.timeoutMs ?? 0) / 1000)} s`
          : e.childFailed > 0 ? `${e.childFailed} sub-task${e.childFailed === 1 ? '' : 's'} did not succeed` : undefined
        const state: TaskState = e.cancelRequested && !e.timedOut ? 'cancelled' : ok && !e.timedOut ? 'succeeded' : 'failed'
        // A cancelled task's sub-tasks were cancelled with it: that is no failure to report.
        this.finish(e, state, { exitCode: ev.code, ...(error !== undefined && state === 'failed' ? { error } : {}) })
        break
      }
      case 'error': {
        if (ev.error.code === 'ERR_PEER_LOST') { this.onLost(e, new VgridError('ERR_PEER_LOST', ev.error.message)); break }
        if (this.ctx.shutdown.aborted && !e.cancelRequested && e.record.attempts.at(-1)?.peer === this.self.peer) {
          // Not started (or ended) because this agent stops: interrupted, not failed.
          this.onLost(e, new VgridError('ERR_PEER_LOST', `the owning agent stopped: ${ev.error.message}`))
          break
        }
        this.finish(e, e.cancelRequested ? 'cancelled' : 'failed', { error: ev.error.message })
        break
      }
      default: break
    }
  }

  /** Its placement is over (on a member, or given up): the next queued task may start placing. */
  private placed (e: Entry): void {
    if (!e.placing) return
    this.setPlacing(e, false)
    queueMicrotask(() => { this.evaluate() })
  }

  private setPlacing (e: Entry, placing: boolean): void {
    if (e.placing === placing) return
    e.placing = placing
    const n = (this.placingByShape.get(e.shape) ?? 0) + (placing ? 1 : -1)
    // a shape none places now is dropped: every `--mem`, `--on`… ever asked for left a key
    if (n === 0) this.placingByShape.delete(e.shape)
    else this.placingByShape.set(e.shape, n)
  }

  /** The executor vanished (or placement failed): retried while retries are left. */
  private onLost (e: Entry, err: unknown): void {
    if (isFinal(e.record.state)) return
    const message = err instanceof Error ? err.message : 'the run ended without an exit status'
    const lost = err instanceof VgridError && err.code === 'ERR_PEER_LOST'
    e.reattaching = false
    this.track(e)
    if (this.ctx.shutdown.aborted && !e.cancelRequested) {
      // This agent is stopping, and its run of the task stopped with it (whatever the stream
      // said: the connection that closed was ours). The task is neither lost nor over: its
      // record stays queued or running, and the next start places it again when it has
      // retries left, else marks it lost (start()). A detached attempt on another member
      // runs on there: left open, it is found again at the next start.
      const a = e.record.attempts.at(-1)
      const detached = a !== undefined && a.peer !== this.self.peer && !e.record.attached && !(err instanceof AttemptGone)
      if (a !== undefined && a.ended === undefined && !detached) { a.ended = Date.now(); a.state = 'lost'; a.error = 'the owning agent stopped' }
      this.save(e)
      return
    }
    if (!lost || e.cancelRequested) {
      this.finish(e, e.cancelRequested ? 'cancelled' : 'failed', { error: message })
      return
    }
    const a = e.record.attempts.at(-1)
    if (a !== undefined && a.ended === undefined) { a.ended = Date.now(); a.state = 'lost'; a.error = message }
    const spent = spentAttempts(e.record)
    if (spent <= e.record.retries) {
      const next = spent < e.record.attempts.length ? 'it had not started: this costs no retry' : `attempt ${spent + 1} of ${e.record.retries + 1}`
      e.log.append(2, Buffer.from(`vgrid: ${message}; placing it again in ${LOST_FENCE_MS / 1000} s, once the lost attempt surely ended (${next})\n`), true)
      // Not at once: a frozen executor's guest may still run until its watchdog kills it
      // (watchdog.ts), and two attempts of one task must never run at the same time.
      e.notBefore = Date.now() + LOST_FENCE_MS
      setTimeout(() => { this.evaluate() }, LOST_FENCE_MS + 10).unref()
      this.setState(e, 'queued', `lost: ${message}; placed again`)
      queueMicrotask(() => { this.evaluate() })
    } else {
      this.finish(e, 'lost', { error: message })
    }
  }

  /**
   * Gang: every shard of the group at once on members with room now, or none of them yet. The
   * view picks a member per shard; each shard claims its member and none starts until all
   * hold their claims (GangGate), so a stale view never starts part of a gang.
   */
  private runGang (group: string): void {
    const shards = [...this.live.values()].filter((e) => e.group === group).sort((a, b) => (a.record.shard?.index ?? 0) - (b.record.shard?.index ?? 0))
    // a shard that ended (cancelled) is no longer among the live ones: the gang cannot start
    if (shards.length < (shards[0]?.record.shard?.count ?? 1)) return
    if (shards.some((e) => e.record.state !== 'queued' || e.run !== undefined || fenced(e))) return
    const assigned = assignGang(this.ctx.grid.view(), shards.map((e) => e.spec), this.self.peer)
    if (assigned === undefined) {
      const unwatch = this.ctx.grid.onViewChange(() => { unwatch(); this.evaluate() })
      return
    }
    const placed = assigned.map((a) => a.peer)
    const hosts = assigned.map((a) => a.address)
    const port = String(GANG_PORT_BASE + Math.floor(Math.random() * 1000))
    const gate = new GangGate(shards.length)
    shards.forEach((e, i) => { this.run(e, { VGRID_GANG_HOSTS: hosts.join(','), MASTER_ADDR: hosts[0], MASTER_PORT: port }, placed[i], gate.seat(i)) })
  }

  /** For whom a new task is: the parent's submitter (a sub-task), else this agent's user. */
  private originOf (parent: string | undefined): Origin {
    return (parent !== undefined ? this.runningHere.get(parent)?.from : undefined) ?? { peer: this.self.peer, user: `${USER}@${this.self.host}` }
  }

  // ── cancel, wait, logs ─────────────────────────────────────────────────────────────────

  private stop (e: Entry): void {
    if (e.run !== undefined && (e.record.state === 'queued' || e.record.state === 'pending') && e.record.attempts.every((a) => a.ended !== undefined)) {
      // Not placed yet: it never starts.
      e.run.abandon()
      this.finish(e, e.timedOut ? 'failed' : 'cancelled', e.timedOut ? { error: 'timed out before it could start' } : {})
    } else if (e.run !== undefined) {
      void e.run.input({ t: 'cancel' })
    } else if (e.reattaching) {
      // Its command runs on a member being found again: the cancel goes there once it is
      // (drive); a member that stays away loses the attempt, and the task ends cancelled.
    } else if (!isFinal(e.record.state)) {
      this.finish(e, e.timedOut ? 'failed' : 'cancelled', e.timedOut ? { error: `timed out after ${Math.round((e.record.timeoutMs ?? 0) / 1000)} s` } : {})
    }
  }

  /** Cancels the task and its sub-tasks; a finished task is left as it is. */
  cancel (id: string): TaskRecord {
    const e = this.live.get(id)
    if (e === undefined) return this.mustGet(id)
    if (isFinal(e.record.state)) return e.record
    e.cancelRequested = true
    this.stop(e)
    for (const c of this.childrenOf(id)) this.cancel(c)
    return e.record
  }

  /**
   * A cancel another member asks for (TASK_PROTOCOL); `peer` is its id as the connection
   * authenticated it. Refused (ERR_NOT_ALLOWED) unless mayCancel.
   */
  cancelFor (id: string, peer: string): TaskRecord {
    const r = this.mustGet(id)
    if (!mayCancel(r, peer)) {
      const submitter = r.submitter ?? r.owner
      const hostOf = (p: string): string => p === this.self.peer ? this.self.host : this.ctx?.grid.view().find((v) => v.peer === p)?.resources.host ?? `${shortPeerId(p)}`
      const running = r.peer !== undefined && !isFinal(r.state) && r.attempts.at(-1)?.ended === undefined ? ` (host ${hostOf(r.peer)})` : ''
      log.warn(`refused to cancel task ${id} for ${peer}: neither its submitter nor its executor`)
      throw new VgridError('ERR_NOT_ALLOWED',
        `task ${id.slice(0, 12)} may not be cancelled from here: only the member that submitted it (host ${hostOf(submitter)}) or the one running it${running} can cancel it`,
        `run \`vgrid task cancel ${id}\` on ${hostOf(submitter)}`)
    }
    return this.cancel(id)
  }

  async wait (id: string, signal?: AbortSignal): Promise<TaskRecord> {
    const e = this.live.get(id)
    if (e === undefined) return this.mustGet(id)
    if (isFinal(e.record.state)) { await e.log.flushed(); return e.record }
    return await new Promise<TaskRecord>((resolve, reject) => {
      const gone = (): void => { reject(new VgridError('ERR_PEER_LOST', 'the waiter went away')) }
      // Taken off once the task ends: a signal that outlives it (a client waiting for every
      // shard of a fan-out, one after the other) would otherwise keep one listener per task.
      e.waiters.push((t) => { signal?.removeEventListener('abort', gone); resolve(t) })
      signal?.addEventListener('abort', gone, { once: true })
    })
  }

  /** Sends the log (then, with `follow`, what comes until the task ends); resolves with the record. */
  async streamLog (id: string, follow: boolean, stderrOnly: boolean, send: (f: LogFrame) => Promise<void>, signal?: AbortSignal): Promise<TaskRecord> {
    const e = this.live.get(id)
    // an ended task's log is whole in its file
    const ended = e === undefined ? this.mustGet(id) : undefined
    const taskLog = e?.log ?? TaskLog.open(this.dir, id)
    let chain = Promise.resolve()
    const stop = taskLog.follow((f) => {
      if (stderrOnly && f.fd !== 2) return
      chain = chain.then(async () => { await send(f) })
    })
    try {
      let record = ended ?? e!.record
      if (follow) record = await this.wait(id, signal)
      else await taskLog.flushed()
      await chain
      return record
    } finally {
      stop()
    }
  }

  get (id: string): TaskRecord | undefined {
    return this.live.get(id)?.record ?? (this.ended.has(id) ? this.readBack(id) : undefined)
  }

  /** Records whose id starts with `prefix`. */
  find (prefix: string): TaskRecord[] {
    const exact = this.get(prefix)
    if (exact !== undefined) return [exact]
    const mine = [...this.live.values()].filter((e) => e.record.id.startsWith(prefix)).map((e) => e.record)
    return [...mine, ...this.readBackMany([...this.ended.ids()].filter((id) => id.startsWith(prefix)))]
  }

  /**
   * The submissions named `name` this agent owns that a lookup by name would consider, in the
   * scope each has for the agent `asker` from `workspace` (names.ts): the newest few of each
   * scope, each with its shards by index.
   */
  namedSubmissions (name: string, o: { asker: string, workspace?: string }): NamedSubmission[] {
    const groups = new Map<string, NameCandidate & { ids: string[] }>()
    for (const k of this.keys()) {
      if (k.name !== name || k.owner !== this.self.peer) continue
      let g = groups.get(k.group)
      if (g === undefined) {
        const scope: NameScope = o.workspace !== undefined && this.fromWorkspace(k, o.workspace)
          ? 'workspace'
          : k.parent === undefined && k.owner === o.asker ? 'own' : 'grid'
        groups.set(k.group, g = { group: k.group, owner: k.owner, created: k.created, live: false, scope, ids: [] })
      }
      g.ids.push(k.id)
      if (!isFinal(k.state)) g.live = true
    }
    return offerCandidates(groups.values()).map((g) => ({
      scope: g.scope,
      tasks: this.records(g.ids).sort((a, b) => (a.shard?.index ?? 0) - (b.shard?.index ?? 0))
    })).filter((s) => s.tasks.length > 0)
  }

  /**
   * Whether a task, or one it descends from that this agent keeps, was submitted from
   * `workspace` (as its user sees it): the sub-tasks of a pipeline started there are of it,
   * --no-sync ones too.
   */
  fromWorkspace (task: string | TaskKey, workspace: string): boolean {
    const keyFor = (id: string): TaskKey | undefined => {
      const e = this.live.get(id)
      return e !== undefined ? keyOf(e) : this.ended.get(id)
    }
    const seen = new Set<string>()
    for (let k = typeof task === 'string' ? keyFor(task) : task; k !== undefined && !seen.has(k.id); k = k.parent !== undefined ? keyFor(k.parent) : undefined) {
      if (k.workspace === workspace) return true
      seen.add(k.id)
    }
    return false
  }

  /** Every record kept, in the order they were submitted (a fan-out's shards by index). */
  list (): TaskRecord[] {
    return [...this.readBackMany(this.ended.ids()), ...[...this.live.values()].map((e) => e.record)]
      .sort(bySubmission)
  }

  /**
   * What names, parents and dependencies need of every task kept, without reading the ended
   * ones' records back (a guest's lookup of its sub-tasks).
   */
  summaries (): TaskKey[] {
    return [...this.keys()]
  }

  /** The records of these tasks: in memory, or read back. */
  private records (ids: readonly string[]): TaskRecord[] {
    const out: TaskRecord[] = []
    const back: string[] = []
    for (const id of ids) {
      const e = this.live.get(id)
      if (e !== undefined) out.push(e.record)
      else back.push(id)
    }
    return [...out, ...this.readBackMany(back)]
  }

  /** What it holds for tasks not yet ended, by table: all 0 once every task has (the soak checks). */
  inFlight (): Record<string, number> {
    return { pending: this.pending.size, waiting: this.waiting.size, gangsWaiting: this.gangsWaiting.size, placingByShape: this.placingByShape.size, runningHere: this.runningHere.size }
  }

  /** The task's record, in memory or read back; ERR_BAD_ARGUMENT when there is none. */
  private mustGet (id: string): TaskRecord {
    const r = this.get(id)
    if (r === undefined) throw new VgridError('ERR_BAD_ARGUMENT', `no task ${id} on this agent`)
    return r
  }

  // ── ChildTracker: the executor's side of sub-tasks ────────────────────────────────────

  begin (task: string, guest?: Guest): ReturnType<ChildTracker['begin']> {
    const kids = new Set<string>()
    // Its sub-tasks are submitted for whoever submitted it: the member that sent it here, or
    // (run for this agent) the one its own record names.
    const own = this.live.get(task)?.record
    const from: Origin = guest !== undefined
      ? { peer: guest.peer, user: guest.who }
      : { peer: own?.submitter ?? this.self.peer, user: own?.user ?? `${USER}@${this.self.host}` }
    this.runningHere.set(task, { kids, from })
    return {
      settle: async (send) => {
        if (kids.size === 0) return
        const ids = (): string[] => [...kids]
        const failed = (): number => ids().filter((id) => this.stateOf(id) !== 'succeeded').length
        if (ids().some((id) => !isFinal(this.stateOf(id) ?? 'lost'))) {
          await send({ t: 'children', ids: ids(), failed: 0, done: false })
          await Promise.all(ids().map(async (id) => await this.wait(id).catch(() => undefined)))
        }
        await send({ t: 'children', ids: ids(), failed: failed(), done: true })
      },
      cancel: () => { for (const id of kids) { try { this.cancel(id) } catch {} } },
      end: () => { this.runningHere.delete(task) }
    }
  }

  // ── persistence ────────────────────────────────────────────────────────────────────────

  /**
   * Writes the record soon: changes made in the same turn of the event loop (a short task's
   * placed, started and exit often come together) share one write, and writes of one record
   * never overlap. flush() waits for them. The write itself blocks: a record is a few hundred
   * bytes, and four thread-pool round trips (open, write, close, rename) cost the owning
   * agent ~2 ms of main thread per task on the 1,000-task benchmark.
   */
  private save (e: Entry): void {
    if (e.saveQueued) return
    e.saveQueued = true
    const saving: Promise<void> = e.saving.then(async () => {
      await new Promise((resolve) => setImmediate(resolve))
      e.saveQueued = false
      this.writeRecord(e)
    }).finally(() => { if (e.saving === saving) e.saving = SAVED })
    e.saving = saving
  }

  /** Writes the record now (a line appended to the journal); never throws. */
  private writeRecord (e: Entry): void {
    const id = e.record.id
    // an entry retired or forgotten meanwhile (a vrun's late event): what is written stays
    if (this.live.get(id) !== e) return
    e.unsaved = !this.journal.append(id, serialize(e))
    for (const l of this.changeListeners) {
      try { l(e.record) } catch (err) { log.warn('a task change listener failed', err) }
    }
    if (e.unsaved) setTimeout(() => { this.save(e) }, SAVE_RETRY_MS).unref()
    else this.retire(e)
  }

  /**
   * This agent stops and its guests are gone: every attempt that ran (or was being set up)
   * here, and every vrun's, ended with it. Recorded now, not when each run's end event comes
   * (it may come after the last save): the next start places them again, or finds the
   * detached ones on their members.
   */
  stopped (): void {
    for (const e of this.live.values()) {
      if (isFinal(e.record.state) || e.cancelRequested) continue
      const a = e.record.attempts.at(-1)
      if (a === undefined || a.ended !== undefined) continue
      if (a.peer !== this.self.peer && !e.record.attached) continue
      a.ended = Date.now(); a.state = 'lost'; a.error = 'the owning agent stopped'
      this.save(e)
    }
  }

  /** Writes what is due and closes the journal: the last call on this manager. */
  async close (): Promise<void> {
    await this.flush()
    this.journal.close()
  }

  /** Resolves when every record is on disk. */
  async flush (): Promise<void> {
    await Promise.all([...this.live.values()].map(async (e) => { await e.saving; await e.log.flushed() }))
  }

  /** Forgets the tasks that ended first, past MAX_TASKS kept: their records and logs. */
  private forgetOld (): void {
    while (this.live.size + this.ended.size > MAX_TASKS) {
      const id = this.ended.forgetFirst()
      if (id === undefined) return
      this.journal.drop(id)
      fs.promises.rm(path.join(this.dir, `${id}.log`), { force: true }).catch(() => {})
    }
  }
}

/**
 * The attempts that count against `--retries`: those whose command started. One lost while
 * its member was still syncing or starting it (or before this agent knew) costs nothing.
 */
function spentAttempts (r: TaskRecord): number {
  return r.attempts.filter((a) => a.began !== false).length
}

export type { DepKind }
