/**
 * `--name` and `--after-success/--after-fail/--after NAME`: shared by vbatch and vrun (a vrun
 * may name itself and wait for named siblings, as in `vrun --after-success inference …`).
 */
import type { DepKind } from '../agent/tasks/types.js'
import { MAX_DEPS, MAX_TASK_NAME_CHARS } from '../protocol/control.js'
import type { CliOption, SplitArgv } from './argv.js'
import { UsageError } from './usage-error.js'

/** Longest task name (the agent refuses longer). */
export const MAX_NAME_CHARS = MAX_TASK_NAME_CHARS

/** The option behind each `--after…`, and the dependency kind it makes. */
const AFTER_OPTIONS: ReadonlyMap<string, DepKind> = new Map([['after-success', 'success'], ['after-fail', 'fail'], ['after', 'any']])

export const NAME_OPTIONS: readonly CliOption[] = [
  { long: 'name', value: 'NAME', description: 'Name the task, so that later tasks can wait for it with --after…' },
  { long: 'after-success', value: 'NAME', description: 'Start once the task NAME has succeeded; if it fails, this one ends upstream-failed (repeatable)', repeatable: true },
  { long: 'after-fail', value: 'NAME', description: 'Start once the task NAME has failed; if it succeeds, this one ends upstream-failed (repeatable)', repeatable: true },
  { long: 'after', value: 'NAME', description: 'Start once the task NAME has ended, however it ended (repeatable)', repeatable: true }
]

export interface NameAndDeps {
  name?: string
  /** In command-line order, whatever the option. */
  after: Array<{ kind: DepKind, name: string }>
}

export function parseNameAndDeps (split: Pick<SplitArgv, 'values' | 'items'>): NameAndDeps {
  const out: NameAndDeps = { after: [] }
  const name = split.values.get('name')?.at(-1)
  if (name !== undefined) {
    out.name = parseName(name, '--name')
    // `NAME[i]` and `NAME[i/K]` name the shards of a fan-out (vgrid task …): no task may look like one.
    if (/\[\d+(?:\/\d+)?\]$/.test(name)) throw new UsageError(`--name ${name}: a task name may not end in [N], which names a shard of a fan-out`)
  }
  for (const { name: opt, value } of split.items) {
    const kind = AFTER_OPTIONS.get(opt)
    if (kind !== undefined) out.after.push({ kind, name: parseName(value, `--${opt}`) })
  }
  if (out.after.length > MAX_DEPS) throw new UsageError(`${out.after.length} dependencies: at most ${MAX_DEPS} may be given`)
  return out
}

/** A task name: what `--after…` of a later task refers to; words only, no blanks. */
function parseName (name: string, what: string): string {
  if (name === '') throw new UsageError(`${what} needs a task name`)
  if (name.length > MAX_NAME_CHARS) throw new UsageError(`${what}: a task name is at most ${MAX_NAME_CHARS} characters`)
  // eslint-disable-next-line no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(name)) throw new UsageError(`${what} ${JSON.stringify(name)}: a task name has no blanks or control characters`)
  return name
}
