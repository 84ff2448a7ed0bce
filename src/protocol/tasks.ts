/**
 * `/vgrid/task/1.0.0`: `vgrid task …` from any member (agent/tasks/remote.ts serves and asks).
 * One request per stream: `{ t: 'list' }` → `{ t: 'tasks', tasks }`; `{ t: 'find', prefix }` →
 * `{ t: 'tasks', tasks }`; `{ t: 'log', id, follow, stderrOnly }` → `{ t: 'log', fd, data }`…
 * `{ t: 'task', task }`; `{ t: 'cancel', id }` and `{ t: 'wait', id }` → `{ t: 'task', task }`;
 * `{ t: 'named', name, workspace? }` → `{ t: 'named', submissions: [{ scope, tasks }] }` (the
 * newest of that name the member owns, agent/tasks/names.ts). Any may be answered `{ t: 'error', error }`. Records are parsed with tasks/types.ts's
 * parseTaskRecord, and taken only from the member that owns them.
 */
import { obj, str, optStr, oneOf, bad } from '../common/validate.js'
import { MAX_PATH_CHARS, MAX_TASK_NAME_CHARS } from './control.js'
import { isTaskId } from '../agent/tasks/types.js'

export const TASK_PROTOCOL = '/vgrid/task/1.0.0'
export const TASK_MAX_FRAME_BYTES = 64 * 1024 * 1024

export type TaskRequest =
  | { t: 'list' }
  | { t: 'find', prefix: string }
  | { t: 'log', id: string, follow: boolean, stderrOnly: boolean }
  | { t: 'cancel', id: string }
  | { t: 'wait', id: string }
  | { t: 'named', name: string, workspace?: string }


export function parseTaskRequest (v: unknown): TaskRequest {
  const m = obj(v, 'task request')
  const t = oneOf(m.t, 't', ['list', 'find', 'log', 'cancel', 'wait', 'named'] as const)
  if (t === 'list') return { t }
  if (t === 'named') {
    const workspace = optStr(m.workspace, 'workspace', MAX_PATH_CHARS)
    return { t, name: str(m.name, 'name', MAX_TASK_NAME_CHARS), ...(workspace !== undefined ? { workspace } : {}) }
  }
  if (t === 'find') {
    const prefix = str(m.prefix, 'prefix', 16)
    if (!/^[0-9a-f]{1,16}$/.test(prefix)) bad('prefix is not hex')
    return { t, prefix }
  }
  const id = str(m.id, 'id', 16)
  if (!isTaskId(id)) bad('id is not a task id')
  if (t === 'log') return { t, id, follow: m.follow === true, stderrOnly: m.stderrOnly === true }
  return { t, id }
}

