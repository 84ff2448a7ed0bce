/**
 * `GET /api/v1/events`: what changes, as it changes. Members joining and leaving this agent's
 * view (the view's peer ids compared at each change of it), and every change of a task this
 * agent owns (its record written: state, placement, exit). Tasks other members own are not
 * seen here; their owners' events are theirs.
 */
import type { PeerView } from '../grid/types.js'
import type { TaskRecord } from '../agent/tasks/types.js'
import type { SseStream } from './sse.js'

/** What /events needs of the grid. */
export interface MembersSource {
  view (): PeerView[]
  onViewChange (cb: () => void): () => void
}

/** What /events needs of the task manager. */
export interface TaskChanges {
  onTaskChange (listener: (task: TaskRecord) => void): () => void
}

export interface MemberEvent { peer: string, host: string }

/** A summary's command line at most: this many arguments of this many characters (a row shows the start). */
const SUMMARY_ARGS = 32
const SUMMARY_ARG_CHARS = 256

/**
 * A task's change as /events sends it: what a list's row shows (its command line clipped),
 * not the whole record, so a new task's row is complete before its record is read.
 */
export function taskSummary (t: TaskRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { id: t.id, state: t.state, owner: t.owner, created: t.created }
  for (const k of ['name', 'parent', 'exitCode', 'error', 'started', 'ended', 'peer', 'host', 'shard', 'user', 'submitter'] as const) {
    if (t[k] !== undefined) out[k] = t[k]
  }
  out.argv = t.argv.slice(0, SUMMARY_ARGS).map((a) => a.slice(0, SUMMARY_ARG_CHARS))
  return out
}

/** The members that joined and left between two views. */
export function membersDiff (before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): { joined: MemberEvent[], left: MemberEvent[] } {
  const joined = [...after].filter(([p]) => !before.has(p)).map(([peer, host]) => ({ peer, host }))
  const left = [...before].filter(([p]) => !after.has(p)).map(([peer, host]) => ({ peer, host }))
  return { joined, left }
}

function members (view: PeerView[]): Map<string, string> {
  return new Map(view.map((p) => [p.peer, p.resources.host]))
}

/**
 * Streams events into `sse` until it closes. The first event, `hello`, lists the members
 * now, so a client knows what the joins and leaves that follow are relative to.
 */
export function streamEvents (sse: SseStream, grid: MembersSource, tasks: TaskChanges): void {
  let known = members(grid.view())
  void sse.send('hello', { members: [...known].map(([peer, host]) => ({ peer, host })) })
  const unView = grid.onViewChange(() => {
    const now = members(grid.view())
    const { joined, left } = membersDiff(known, now)
    known = now
    for (const m of joined) void sse.send('member-joined', m)
    for (const m of left) void sse.send('member-left', m)
  })
  const unTasks = tasks.onTaskChange((t) => { void sse.send('task', taskSummary(t)) })
  sse.signal.addEventListener('abort', () => { unView(); unTasks() }, { once: true })
}
