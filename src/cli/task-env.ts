/**
 * What a command learns from running inside a task: the executing agent sets VGRID_TASK_ID
 * (and VGRID_HOME, VGRID_WORKSPACE) in the task's environment, and a `vrun` or `vbatch` from
 * there sends the id as `parent`, so its task becomes a child of the running one.
 */
import { isTaskId } from '../agent/tasks/types.js'

/** The task we run inside, when there is one; a value that is not a task id is ignored. */
export function taskParent (env: NodeJS.ProcessEnv): string | undefined {
  const id = env.VGRID_TASK_ID?.trim().toLowerCase()
  return id !== undefined && isTaskId(id) ? id : undefined
}
