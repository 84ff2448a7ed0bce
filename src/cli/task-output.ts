/**
 * What `vgrid task list`, `vgrid task show` and `vbatch` print about tasks, shaped in one
 * place as output.ts does for the rest: pure functions from records to text, so tests pin the
 * wording and the layout. `--json` is `{ "tasks": TaskRecord[] }` or the record itself
 * (src/agent/tasks/types.ts), pretty printed; new fields may appear, none are renamed.
 */
import { bySubmission, isFinal, type TaskRecord } from '../agent/tasks/types.js'
import { renderTable } from './output.js'
import { shortPeerId } from '../common/peer-id.js'

/** Digits of a task id shown in tables: unique in any lab, and accepted back as a prefix. */
export const SHORT_TASK_ID_CHARS = 12
/** Without --all, `task list` shows the trees begun this recently… */
export const RECENT_TASKS_MS = 24 * 3600_000
/** …and at most this many submissions of them, the newest (a fan-out's shards are one). */
export const MAX_RECENT_TREES = 50

export function shortTaskId (id: string): string {
  return id.slice(0, SHORT_TASK_ID_CHARS)
}

/** `850ms`, `12.3s`, `4m05s`, `1h02m` (and `130h00m`): short, and sortable by eye. */
export function formatElapsed (ms: number): string {
  const t = Math.max(0, Math.floor(ms))
  if (t < 1000) return `${t}ms`
  if (t < 60_000) return `${(Math.floor(t / 100) / 10).toFixed(1)}s`
  const s = Math.floor(t / 1000)
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor(s % 3600 / 60)).padStart(2, '0')}m`
}

/** How long it ran: to its end, or to now while it runs; '-' before it started. */
export function taskDuration (t: TaskRecord, now: number): string {
  if (t.started === undefined) return '-'
  if (t.ended === undefined && isFinal(t.state)) return '-'
  return formatElapsed((t.ended ?? now) - t.started)
}

/** argv as a shell would read it back: words with blanks or specials are single-quoted. */
export function formatArgv (argv: readonly string[]): string {
  return argv.map((a) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll('\'', '\'\\\'\'')}'`).join(' ')
}

/** The name column: the name, with `[index/count]` for a shard. */
function taskName (t: TaskRecord): string {
  const shard = t.shard !== undefined ? `[${t.shard.index}/${t.shard.count}]` : ''
  return t.name !== undefined ? `${t.name}${shard}` : shard === '' ? '-' : shard
}

export interface TaskTree { task: TaskRecord, children: TaskTree[] }

/**
 * The records as trees: a record whose parent is in the list goes under it; one whose parent
 * is not (elsewhere, or left out) stands at the top. Siblings in the order they were made.
 */
export function taskTrees (tasks: readonly TaskRecord[]): TaskTree[] {
  const byId = new Map<string, TaskTree>()
  for (const task of tasks) byId.set(task.id, { task, children: [] })
  const roots: TaskTree[] = []
  for (const node of byId.values()) {
    const parent = node.task.parent !== undefined && node.task.parent !== node.task.id ? byId.get(node.task.parent) : undefined
    if (parent !== undefined && !isAncestor(node, parent, byId)) parent.children.push(node)
    else roots.push(node)
  }
  const order = (a: TaskTree, b: TaskTree): number => bySubmission(a.task, b.task)
  const sort = (nodes: TaskTree[]): void => { nodes.sort(order); for (const n of nodes) sort(n.children) }
  sort(roots)
  return roots
}

/** Guards against a cycle in records from the wire: is `node` above `parent`? */
function isAncestor (node: TaskTree, parent: TaskTree, byId: Map<string, TaskTree>): boolean {
  const seen = new Set<string>()
  for (let p: TaskTree | undefined = parent; p !== undefined && !seen.has(p.task.id); p = p.task.parent !== undefined ? byId.get(p.task.parent) : undefined) {
    if (p === node) return true
    seen.add(p.task.id)
  }
  return false
}

export interface TaskSelection {
  trees: TaskTree[]
  /** Top-level trees left out (older, or past the newest MAX_RECENT_TREES). */
  hidden: number
}

/**
 * What `task list` shows: with `all` every tree; without, the trees begun in the last 24 h or
 * still going (an old task that still runs stays in sight), those of the newest
 * MAX_RECENT_TREES submissions. The shards of one `vbatch -N` are one submission: a fan-out
 * is shown whole or not at all.
 */
export function selectTaskTrees (tasks: readonly TaskRecord[], all: boolean, now: number): TaskSelection {
  const trees = taskTrees(tasks)
  if (all) return { trees, hidden: 0 }
  const recent = trees.filter((t) => now - t.task.created < RECENT_TASKS_MS || !isFinal(t.task.state))
  const submissions = new Set<string>()
  for (let i = recent.length - 1; i >= 0; i--) {
    const key = submissionOf(recent[i]!.task)
    if (!submissions.has(key) && submissions.size >= MAX_RECENT_TREES) break
    submissions.add(key)
  }
  const shown = recent.filter((t) => submissions.has(submissionOf(t.task)))
  return { trees: shown, hidden: trees.length - shown.length }
}

/** Shards of one fan-out share their owner, name, count and creation time; any other task is its own. */
function submissionOf (t: TaskRecord): string {
  return t.shard !== undefined ? `${t.owner}\0${t.name ?? ''}\0${t.shard.count}\0${t.created}` : t.id
}

/** The records of some trees, parents before their children. */
export function flattenTrees (trees: readonly TaskTree[]): TaskRecord[] {
  const out: TaskRecord[] = []
  const walk = (nodes: readonly TaskTree[]): void => { for (const n of nodes) { out.push(n.task); walk(n.children) } }
  walk(trees)
  return out
}

const LIST_COLUMNS = ['ID', 'NAME', 'STATE', 'EXIT', 'USER', 'HOST', 'STARTED', 'DURATION', 'COMMAND'] as const

/**
 * When a task started, in this machine's time: `14:05:09` within the last day, else the date
 * too (`2026-12-01 14:05`); '-' before it started.
 */
export function formatStarted (ms: number | undefined, now: number): string {
  if (ms === undefined) return '-'
  const d = new Date(ms)
  const two = (n: number): string => String(n).padStart(2, '0')
  const clock = `${two(d.getHours())}:${two(d.getMinutes())}`
  if (Math.abs(now - ms) < 24 * 3600_000) return `${clock}:${two(d.getSeconds())}`
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${clock}`
}

/**
 * The HOST column: the executor's host name, with the end of its peer id where two members
 * in the list share that name.
 */
function hostNamer (tasks: readonly TaskRecord[]): (t: TaskRecord) => string {
  const peersOf = new Map<string, Set<string>>()
  for (const t of tasks) {
    if (t.host === undefined || t.host === '' || t.peer === undefined) continue
    const set = peersOf.get(t.host) ?? new Set<string>()
    set.add(t.peer)
    peersOf.set(t.host, set)
  }
  const all = [...new Set(tasks.flatMap((t) => t.peer !== undefined ? [t.peer] : []))]
  return (t) => {
    if (t.host === undefined || t.host === '') return '-'
    return t.peer !== undefined && (peersOf.get(t.host)?.size ?? 0) > 1 ? `${t.host} (${shortPeerId(t.peer, all)})` : t.host
  }
}

export interface ListOptions {
  now: number
  /** The terminal's width: COMMAND is cut to fit it; absent (a pipe), nothing is cut. */
  width?: number
}

/** The `task list` table: one line a task, sub-tasks indented two spaces under their parent. */
export function renderTaskList (sel: TaskSelection, opts: ListOptions): string {
  if (sel.trees.length === 0) {
    return sel.hidden > 0
      ? `no tasks in the last 24 h (${sel.hidden} older; vgrid task list --all shows them)\n`
      : 'no tasks\n'
  }
  const rows: string[][] = []
  const hostOf = hostNamer(flattenTrees(sel.trees))
  const walk = (nodes: readonly TaskTree[], depth: number): void => {
    for (const { task: t, children } of nodes) {
      rows.push([
        `${'  '.repeat(depth)}${shortTaskId(t.id)}`,
        taskName(t),
        t.state,
        t.exitCode !== undefined ? String(t.exitCode) : '-',
        t.user ?? '-',
        hostOf(t),
        formatStarted(t.started, opts.now),
        taskDuration(t, opts.now),
        formatArgv(t.argv)
      ])
      walk(children, depth + 1)
    }
  }
  walk(sel.trees, 0)
  let text = renderTable([LIST_COLUMNS as readonly string[], ...rows])
  if (opts.width !== undefined) text = text.split('\n').map((l) => cut(l, opts.width!)).join('\n')
  if (sel.hidden > 0) text += `(${sel.hidden} older ${sel.hidden === 1 ? 'task tree' : 'task trees'} not shown; --all shows them)\n`
  return text
}

/** COMMAND is the last column, so cutting a line cuts it (the other columns are short). */
function cut (line: string, width: number): string {
  return line.length <= width ? line : `${line.slice(0, Math.max(0, width - 1))}…`
}

/** `hidden`: top-level trees left out (without --all), so a script knows the list is not whole. */
export function tasksJson (tasks: readonly TaskRecord[], hidden = 0): string {
  return `${JSON.stringify({ tasks, hidden }, null, 2)}\n`
}

export function taskJson (task: TaskRecord): string {
  return `${JSON.stringify(task, null, 2)}\n`
}

function when (ms: number | undefined, now: number): string {
  if (ms === undefined) return '-'
  return `${new Date(ms).toISOString()} (${formatElapsed(now - ms)} ago)`
}

function where (host: string | undefined, peer: string | undefined): string {
  if (peer === undefined || peer === '') return host !== undefined && host !== '' ? host : '-'
  return host !== undefined && host !== '' ? `${host} (${shortPeerId(peer)})` : shortPeerId(peer)
}

/** The state with what ended it: `failed (exit 3)`, `lost: …`. */
export function describeState (t: { state: TaskRecord['state'], exitCode?: number | undefined }): string {
  if (t.exitCode === undefined || !isFinal(t.state)) return t.state
  // A cancelled command's status is how it took the stop, not the task's (that is 130).
  return t.state === 'cancelled' ? `cancelled (its command exited ${t.exitCode})` : `${t.state} (exit ${t.exitCode})`
}

const DEP_WORDS = { success: 'after success of', fail: 'after failure of', any: 'after the end of' } as const

/** `vgrid task show`: every field worth reading, one per line, lists continued below. */
export function renderTaskShow (t: TaskRecord, now: number): string {
  const rows: Array<[string, string]> = [
    ['id', t.id],
    ['name', t.name ?? '-'],
    ['state', describeState(t)],
    ['command', formatArgv(t.argv)]
  ]
  const many = (key: string, values: string[]): void => {
    values.forEach((v, i) => { rows.push([i === 0 ? key : '', v]) })
  }
  if (t.error !== undefined) rows.push(['error', t.error])
  if (t.parent !== undefined) rows.push(['parent', t.parent])
  rows.push(['owner', where(t.ownerHost, t.owner)])
  // The peer id in full: it is what the grid authenticated (the user@host is only stated).
  if (t.submitter !== undefined) rows.push(['submitter', `${t.user ?? '?'} (peer ${t.submitter})`])
  rows.push(['host', where(t.host, t.peer)])
  rows.push(['kind', t.attached ? 'attached (vrun)' : 'detached (vbatch)'])
  rows.push(['created', when(t.created, now)], ['started', when(t.started, now)], ['ended', when(t.ended, now)])
  rows.push(['duration', taskDuration(t, now)])
  if (t.shard !== undefined) rows.push(['shard', `${t.shard.index} of ${t.shard.count} (VGRID_SHARD_INDEX=${t.shard.index})`])
  if (t.timeoutMs !== undefined) rows.push(['timeout', formatElapsed(t.timeoutMs)])
  rows.push(['retries', String(t.retries)])
  many('deps', t.deps.length === 0 ? ['-'] : t.deps.map((d) => `${DEP_WORDS[d.kind]} ${d.name} (${shortTaskId(d.id)})`))
  many('attempts', t.attempts.length === 0 ? ['-'] : t.attempts.map((a, i) => {
    const span = `${new Date(a.started).toISOString()} → ${a.ended !== undefined ? new Date(a.ended).toISOString() : 'now'}`
    const end = a.state !== undefined ? `  ${describeState({ state: a.state, exitCode: a.exitCode })}` : ''
    return `${i + 1}. ${where(a.host, a.peer)}  ${span}${end}${a.error !== undefined ? `: ${a.error}` : ''}`
  }))
  many('children', t.children.length === 0 ? ['-'] : [...t.children])
  // Each change of state and why: what a user reads to know what happened to it.
  if (t.history !== undefined && t.history.length > 0) {
    many('history', t.history.map((h) => `${new Date(h.at).toISOString()}  ${h.state.padEnd(16)}  ${h.why}`))
  }
  const width = Math.max(...rows.map(([k]) => k.length))
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`.trimEnd() + '\n').join('')
}

/** A list of ids in one line, short when there are many: `a, b and c`, `a … z (40 tasks)`. */
export function describeIds (ids: readonly string[]): string {
  if (ids.length <= 1) return ids.join('')
  if (ids.length <= 4) return `${ids.slice(0, -1).join(', ')} and ${ids.at(-1)!}`
  return `${ids[0]!} … ${ids.at(-1)!} (${ids.length} tasks)`
}

/**
 * Why a task did not succeed, when its exit status alone does not say (it was cancelled, lost,
 * a dependency failed, it could not start); undefined for a success or a plain failure.
 */
export function taskEndNotice (t: TaskRecord): string | undefined {
  if (t.state === 'succeeded' || (t.state === 'failed' && t.exitCode !== undefined && t.error === undefined)) return undefined
  return `task ${shortTaskId(t.id)} ${describeState(t)}${t.error !== undefined ? `: ${t.error}` : ''}`
}
