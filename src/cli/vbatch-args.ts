/**
 * vbatch's command line: `vbatch [options] CMD [ARGS…]`, split like vrun's (argv.ts): options
 * end at the first word that is not one, or at `--`. It takes vrun's options that say what to
 * run and where (not --tty: nobody is attached), and those of a detached task: a name,
 * dependencies on named tasks, shards, retries and a time limit.
 */
import { MAX_SHARDS, type BatchOptions, type BatchRequest } from '../protocol/control.js'
import type { WorkspaceRef } from '../fs-sync/workspace.js'
import { splitArgv, type CliOption } from './argv.js'
import { NAME_OPTIONS, parseNameAndDeps } from './task-deps-args.js'
import { UsageError } from './usage-error.js'
import { HELP_OPTIONS, RUN_OPTIONS, parseCount, parseRunOptions, type RunOptions } from './vrun-args.js'

/** `--retries` at most this (the agent refuses more). */
export const MAX_RETRIES = 1000
/** `--timeout` at most this: 2^40 ms, about 34 years. */
export const MAX_TIMEOUT_MS = 2 ** 40
export { MAX_NAME_CHARS } from './task-deps-args.js'

export const VBATCH_OPTIONS: readonly CliOption[] = [
  ...RUN_OPTIONS.map((o) => o.long === 'quiet'
    ? { ...o, description: 'With -f: no lines of our own on stderr (task ids, detaching), only the task\'s output' }
    : o),
  { short: 'f', long: 'follow', description: 'Stay attached: stream the output here and exit with the task\'s status (Ctrl-C detaches)' },
  ...NAME_OPTIONS,
  { short: 'N', value: 'K', description: 'Run K shards of the command; each sees VGRID_SHARD_INDEX (0 to K-1) and VGRID_SHARD_COUNT', default: '1' },
  { long: 'gang', description: 'With -N: start all shards at once or none, each told the others\' addresses (VGRID_GANG_HOSTS, MASTER_ADDR, MASTER_PORT)' },
  { long: 'retries', value: 'N', description: 'Place the task again up to N times when its executor vanishes', default: '0' },
  { long: 'timeout', value: 'DURATION', description: 'Stop the command after DURATION: 90 (seconds), 90s, 15m, 2h or 1d' },
  ...HELP_OPTIONS
]

export type VbatchInvocation =
  | { kind: 'help' }
  | { kind: 'version' }
  | VbatchRun

/** `after` is in command-line order, whatever the option. */
export interface VbatchRun extends RunOptions, BatchOptions {
  kind: 'batch'
  follow: boolean
}

/** Parses and validates vbatch's arguments; throws UsageError for anything the user must fix. */
export function parseVbatchArgs (argv: readonly string[], env: NodeJS.ProcessEnv = process.env): VbatchInvocation {
  const { values, items, command } = splitArgv(argv, VBATCH_OPTIONS)
  if (values.has('help')) return { kind: 'help' }
  if (values.has('version')) return { kind: 'version' }
  const last = (name: string): string | undefined => values.get(name)?.at(-1)
  const inv: VbatchRun = {
    kind: 'batch',
    ...parseRunOptions(values, command, env),
    follow: values.has('follow'),
    after: [],
    shards: 1,
    gang: values.has('gang'),
    retries: 0
  }
  Object.assign(inv, parseNameAndDeps({ values, items }))
  const shards = last('N')
  if (shards !== undefined) {
    if (/^0+$/.test(shards)) throw new UsageError('-N 0: a batch needs at least one shard', 'leave -N out for a single task')
    inv.shards = parseCount(shards, '-N', 1, MAX_SHARDS)
  }
  if (inv.gang && inv.shards > 1 && inv.on !== undefined) {
    throw new UsageError('--gang places its shards on several members: it cannot be combined with --on')
  }
  const retries = last('retries')
  if (retries !== undefined) inv.retries = parseCount(retries, '--retries', 0, MAX_RETRIES)
  const timeout = last('timeout')
  if (timeout !== undefined) inv.timeoutMs = parseDuration(timeout, '--timeout')
  return inv
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/

/**
 * `90` (seconds, as timeout(1) reads it), `90s`, `1.5h`, `15m`, `2h`, `1d`, `500ms` →
 * milliseconds, at least 1; anything else is a UsageError naming `what`.
 */
export function parseDuration (value: string, what = 'duration'): number {
  const m = DURATION_RE.exec(value.trim().toLowerCase())
  if (m === null) {
    throw new UsageError(`${what} ${JSON.stringify(value)} is not a duration`, 'give a number and a unit: 90s, 15m, 2h or 1d (a bare number is seconds)')
  }
  const ms = Math.round(Number(m[1]) * DURATION_UNITS_MS[m[2] ?? 's']!)
  if (ms < 1) throw new UsageError(`${what} ${value}: must be longer than zero`)
  if (ms > MAX_TIMEOUT_MS) throw new UsageError(`${what} ${value}: longer than vgrid can keep (about 34 years)`)
  return ms
}

/**
 * The request for the agent. With a workspace, the command runs in the same relative
 * directory of the executor's copy unless --cwd said otherwise, as with vrun.
 */
export function batchRequest (inv: VbatchRun, workspace?: WorkspaceRef, parent?: string): BatchRequest {
  const spec = { ...inv.spec }
  if (workspace !== undefined) spec.cwd ??= workspace.cwd
  const req: BatchRequest = { spec, after: inv.after.map((d) => ({ ...d })), shards: inv.shards, gang: inv.gang, retries: inv.retries }
  if (inv.on !== undefined) req.on = inv.on
  if (workspace !== undefined) req.workspace = workspace
  if (inv.name !== undefined) req.name = inv.name
  if (inv.timeoutMs !== undefined) req.timeoutMs = inv.timeoutMs
  if (parent !== undefined) req.parent = parent
  return req
}
