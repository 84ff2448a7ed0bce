/**
 * Finding a task by the name given with `--name`, from any member (`vgrid task log NAME`).
 * Every member offers its newest submissions of that name, each in the scope it has for the
 * one asking; the nearest scope with any wins, and in it the newest submission:
 *
 *   1. `workspace`: a task whose workspace, as its user sees it, is the caller's (a sub-task
 *      of a pipeline started from there counts: it runs in the same workspace);
 *   2. `own`: a top-level task submitted through the caller's agent, from anywhere;
 *   3. `grid`: any task of any member.
 *
 * Submissions of one member are ordered by its clock: the newest wins, as `--after` takes it,
 * even a resubmission while the first still runs. Two of the nearest scope owned by different
 * members are **equally near** (the user must give an id) when they were created less than
 * NAME_TIE_MS apart (the clocks of two machines agree no better, and no one could say which
 * they meant), or when both are still live (the same name started from two machines:
 * following or cancelling the one with the later clock would be a guess).
 */
import type { TaskRecord } from './types.js'

/** Nearest first. */
export const NAME_SCOPES = ['workspace', 'own', 'grid'] as const
export type NameScope = typeof NAME_SCOPES[number]

/** Submissions closer in time than this cannot be told apart by "newest". */
export const NAME_TIE_MS = 1_000
/** The newest submissions of a name each member offers per scope: enough to find a tie. */
export const NAME_OFFER_PER_SCOPE = 2

/** One submission of a name: a task, or every shard of one `vbatch -N`. */
export interface NamedSubmission {
  scope: NameScope
  /** Its shards by index; one record for a task that is no fan-out. */
  tasks: TaskRecord[]
}

/** What choosing among submissions needs of one (a TaskKey-like summary). */
export interface NameCandidate {
  group: string
  owner: string
  created: number
  live: boolean
  scope: NameScope
}

/**
 * The candidates a member offers: the newest NAME_OFFER_PER_SCOPE of each scope, newest
 * first. Among every member's offers the newest two of any scope are always present.
 */
export function offerCandidates<T extends NameCandidate> (all: Iterable<T>): T[] {
  const byScope = new Map<NameScope, T[]>()
  for (const c of all) {
    const list = byScope.get(c.scope) ?? []
    list.push(c)
    list.sort((a, b) => b.created - a.created)
    if (list.length > NAME_OFFER_PER_SCOPE) list.length = NAME_OFFER_PER_SCOPE
    byScope.set(c.scope, list)
  }
  return NAME_SCOPES.flatMap((s) => byScope.get(s) ?? [])
}

export type NamePick<T> = { pick: T } | { tied: T[] } | undefined

/**
 * The submission a name means among the candidates of every member (see the module's
 * comment); `tied` lists those equally near, newest first; undefined when there is none.
 */
export function pickNamed<T extends NameCandidate> (candidates: readonly T[]): NamePick<T> {
  for (const scope of NAME_SCOPES) {
    const here = candidates.filter((c) => c.scope === scope).sort((a, b) => b.created - a.created)
    if (here.length === 0) continue
    const newest = here[0]!
    const tied = here.filter((c) => c === newest || equallyNear(newest, c))
    return tied.length > 1 ? { tied } : { pick: newest }
  }
  return undefined
}

function equallyNear (a: NameCandidate, b: NameCandidate): boolean {
  if (a.group === b.group || a.owner === b.owner) return false
  if (Math.abs(a.created - b.created) < NAME_TIE_MS) return true
  return a.live && b.live
}
