/**
 * The socket of one guest task (`$VGRID_HOME` in the guest): what a task may ask of the agent
 * running it (DESIGN §5). Its nested vrun and vbatch become its sub-tasks; it may follow, wait
 * for, log and cancel those, and read the grid's view. It may not change the owner's policy,
 * read the join token, or touch any other task. Paths it sends are its own (the workspace at
 * the submitter's path) and are turned into this machine's before the agent sees them.
 */
import path from 'node:path'
import { VgridError } from '../common/errors.js'
import { within } from '../exec/sandbox.js'
import type { ControlRequest } from '../protocol/control.js'
import type { WorkspaceRef } from '../fs-sync/index.js'
import type { TaskRecord } from './tasks/types.js'

/** Where a guest's workspace is: as it sees it, on this machine, and as its user sees it. */
export interface WorkspaceView {
  seen: string
  host: string
  user: string
}

export interface GuestScope {
  task: string
  workspace?: WorkspaceView
}

/** A workspace named by a guest, as the agent must use it. */
export function hostWorkspace (scope: GuestScope, ws: WorkspaceRef): WorkspaceRef {
  const v = scope.workspace
  if (v === undefined || !within(ws.dir, v.seen)) {
    throw new VgridError('ERR_NOT_ALLOWED', `a sub-task's workspace must be inside its task's${v !== undefined ? ` (${v.seen})` : ''}, not ${ws.dir}`,
      v !== undefined ? `run it from inside ${v.seen}, or with --no-sync` : 'this task has no workspace: run sub-tasks with --no-sync')
  }
  // within() resolved it: no `..` climbs out of the copy here
  const rel = path.relative(v.seen, path.resolve(ws.dir))
  return { dir: path.join(v.host, rel), cwd: ws.cwd, mount: path.join(v.user, rel) }
}

/** What finding a task among another's sub-tasks needs of it (a record, or a TaskKey). */
type Kin = Pick<TaskRecord, 'id' | 'name' | 'created'> & { parent?: string | undefined, shard?: { index: number } | undefined }

/** Whether `r` is a sub-task of `task`, however deep, among `records` (by id). */
export function descends (r: Kin, task: string, byId: ReadonlyMap<string, Kin>): boolean {
  const seen = new Set<string>()
  for (let p = r.parent; p !== undefined && !seen.has(p); p = byId.get(p)?.parent) {
    if (p === task) return true
    seen.add(p)
  }
  return false
}

/** The records of `task`'s sub-tasks that `ref` (an id, a prefix of one, or a name) names. */
export function subTasks<T extends Kin> (records: readonly T[], task: string, ref: string): T[] {
  const byId = new Map(records.map((r) => [r.id, r]))
  const mine = records.filter((r) => descends(r, task, byId))
  const exact = mine.filter((r) => r.id === ref)
  if (exact.length > 0) return exact
  const named = mine.filter((r) => r.name === ref)
  if (named.length > 0) {
    // the newest submission of that name, all its shards
    const newest = Math.max(...named.map((r) => r.created))
    return named.filter((r) => r.created === newest).sort((a, b) => (a.shard?.index ?? 0) - (b.shard?.index ?? 0))
  }
  return /^[0-9a-f]{1,16}$/.test(ref) ? mine.filter((r) => r.id.startsWith(ref)) : []
}

/** What a guest may not ask at all, with why; undefined when it may. */
export function refusedForGuest (req: ControlRequest): VgridError | undefined {
  const no = (what: string): VgridError => new VgridError('ERR_NOT_ALLOWED', `a task cannot ${what}`,
    'ask the owner of this machine; a task may run and follow its own sub-tasks and read the grid (`vgrid peers`)')
  switch (req.t) {
    case 'agent-set': return no('change the owner\'s policy (vgrid agent set)')
    case 'agent-stop': return no('stop the agent (vgrid agent stop)')
    case 'join-token': return no('read the grid\'s join token')
    case 'ui-login': return no('log in to the owner\'s dashboard (vgrid ui)')
    default: return undefined
  }
}
