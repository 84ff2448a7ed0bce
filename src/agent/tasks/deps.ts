/**
 * When a task may start: `--after NAME` (the upstream ended), `--after-success` (it
 * succeeded), `--after-fail` (it failed or was lost). Pure: the caller says what state each
 * upstream is in (undefined: no such task any more).
 */
import { isFinal, type TaskDep, type TaskState } from './types.js'

export type StateOf = (id: string) => TaskState | undefined

/** true: met; false: can never be met; undefined: not yet. */
export function depMet (d: TaskDep, stateOf: StateOf): boolean | undefined {
  const s = stateOf(d.id)
  if (s === undefined) return false
  if (!isFinal(s)) return undefined
  if (d.kind === 'any') return true
  if (d.kind === 'success') return s === 'succeeded'
  return s === 'failed' || s === 'lost'
}

/** Whether a task with these dependencies may start now, must wait, or never will. */
export function depsVerdict (deps: readonly TaskDep[], stateOf: StateOf): 'ready' | 'wait' | 'never' {
  let wait = false
  // `--after-fail NAME` on a fan-out (one dep per shard): the group failed when any shard
  // did, once all have ended, as `--after-success` needs every shard to succeed.
  const failGroups = new Map<string, TaskDep[]>()
  for (const d of deps) {
    if (d.kind === 'fail') {
      const g = failGroups.get(d.name)
      if (g === undefined) failGroups.set(d.name, [d])
      else g.push(d)
      continue
    }
    const met = depMet(d, stateOf)
    if (met === false) return 'never'
    if (met === undefined) wait = true
  }
  for (const group of failGroups.values()) {
    const states = group.map((d) => stateOf(d.id))
    if (states.some((s) => s === undefined)) return 'never'
    if (states.some((s) => !isFinal(s!))) { wait = true; continue }
    if (!states.some((s) => s === 'failed' || s === 'lost')) return 'never'
  }
  return wait ? 'wait' : 'ready'
}
