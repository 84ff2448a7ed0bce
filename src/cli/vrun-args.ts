/**
 * vrun's command line: `vrun [options] CMD [ARGS…]` (split as argv.ts explains). The options
 * that say what to run and where (resources, environment, workspace) are shared with vbatch:
 * `RUN_OPTIONS` and `parseRunOptions`.
 */
import path from 'node:path'
import { VgridError } from '../common/errors.js'
import { formatBytes, parseSize } from '../common/units.js'
import { MAX_ARG_BYTES, MAX_ARGV_BYTES, MAX_ARGV_ITEMS, argvBytes, type RunSpec } from '../protocol/session.js'
import { LABEL_KEY_RE, MAX_CPUS, MAX_GPUS, MAX_LABEL_VALUE_CHARS, MAX_LABELS, MAX_REQUEST_BYTES, POOL_NAME_RE, isShapeName, shapeName } from '../common/resources.js'
import { NAME_OPTIONS, parseNameAndDeps, type NameAndDeps } from './task-deps-args.js'
import { UsageError } from './usage-error.js'
import { splitArgv, type CliOption, type SplitArgv } from './argv.js'

export { optionName, type SplitArgv } from './argv.js'

export type TtyMode = 'yes' | 'no' | 'auto'

/** One option of vrun (see argv.ts). */
export type VrunOption = CliOption

/** What to run and where: vrun's and vbatch's. */
export const RUN_OPTIONS: readonly CliOption[] = [
  { long: 'on', value: 'PEER', description: 'Run on this member: a peer id, a unique prefix of one, or a host name' },
  {
    short: 'P',
    value: 'NAME',
    description: 'A shape if NAME is exactly cpu-N, gpu-N, gpu-MODEL or gpu-MODEL-N (gpu-a100 = one GPU whose model contains a100), ' +
      'else a pool (vgrid agent --pool). Give -P twice for both; --cpus/--gpus/--gpu-model win over the shape'
  },
  { long: 'cpus', value: 'N', description: 'Cores to reserve', default: '1' },
  { long: 'mem', value: 'SIZE', description: 'Memory to reserve, e.g. 512M or 16G (binary units: G = 2^30)' },
  { long: 'gpus', value: 'N', description: 'GPUs to reserve (whole and exclusive; CUDA_VISIBLE_DEVICES is set)', default: '0' },
  { long: 'gpu-model', value: 'SUBSTR', description: 'Only GPUs whose model contains SUBSTR (case-insensitive), e.g. a100' },
  { long: 'gpu-mem', value: 'SIZE', description: 'Only GPUs with at least SIZE of memory each, e.g. 40G' },
  { long: 'label', value: 'KEY=VAL', description: 'Only members labelled so (vgrid agent --label); all given must match (repeatable)', repeatable: true },
  { short: 'e', long: 'env', value: 'KEY[=VAL]', description: 'Set KEY in the command\'s environment; KEY alone copies it from yours (repeatable)', repeatable: true },
  { long: 'cwd', value: 'DIR', description: 'Directory to run in, relative to the workspace' },
  { long: 'workspace', value: 'DIR', description: 'The directory synced to the executor (default: the git top-level, else the current directory)' },
  { long: 'no-sync', description: 'Do not sync the workspace: the command runs in an empty scratch directory' },
  { short: 'q', long: 'quiet', description: 'No sync progress or summary on stderr' }
]

export const HELP_OPTIONS: readonly CliOption[] = [
  { short: 'h', long: 'help', description: 'Show this help' },
  { long: 'version', description: 'Show the version' }
]

export const VRUN_OPTIONS: readonly CliOption[] = [
  ...RUN_OPTIONS,
  ...NAME_OPTIONS,
  { long: 'tty', value: 'yes|no|auto', description: 'Run under a pseudo-terminal; auto = when stdin and stdout are terminals', default: 'auto' },
  ...HELP_OPTIONS
]

export type VrunInvocation =
  | { kind: 'help' }
  | { kind: 'version' }
  /** `spec.tty` is left out: the terminal's size is read when the command starts. */
  | ({ kind: 'run', spec: RunSpec, on?: string, tty: TtyMode, sync: boolean, workspace?: string, quiet: boolean } & NameAndDeps)

/** The options shared with vbatch, validated. */
export interface RunOptions {
  spec: RunSpec
  on?: string
  sync: boolean
  workspace?: string
  quiet: boolean
}

export function splitVrunArgv (argv: readonly string[]): SplitArgv {
  return splitArgv(argv, VRUN_OPTIONS)
}

/** Parses and validates vrun's arguments; throws UsageError for anything the user must fix. */
export function parseVrunArgs (argv: readonly string[], env: NodeJS.ProcessEnv = process.env): VrunInvocation {
  const { values, items, command } = splitVrunArgv(argv)
  if (values.has('help')) return { kind: 'help' }
  if (values.has('version')) return { kind: 'version' }
  return { kind: 'run', ...parseRunOptions(values, command, env), tty: parseTtyMode(values.get('tty')?.at(-1) ?? 'auto'), ...parseNameAndDeps({ values, items }) }
}

/** The command and the RUN_OPTIONS among `values`, validated; a missing command is an error. */
export function parseRunOptions (values: ReadonlyMap<string, string[]>, command: readonly string[], env: NodeJS.ProcessEnv): RunOptions {
  if (command.length === 0) throw new UsageError('no command given', undefined, { showHelp: true })
  if (command[0] === '') throw new UsageError('the command name is empty')
  for (const [i, a] of command.entries()) {
    if (Buffer.byteLength(a) > MAX_ARG_BYTES) throw new UsageError(`argument ${i} is ${Buffer.byteLength(a)} bytes: at most ${MAX_ARG_BYTES} travel in one argument`)
  }
  if (command.length > MAX_ARGV_ITEMS || argvBytes(command) > MAX_ARGV_BYTES) {
    throw new UsageError(`the command has ${command.length.toLocaleString('en-US')} arguments (${formatBytes(argvBytes(command))}): at most ${MAX_ARGV_ITEMS.toLocaleString('en-US')} arguments and ${formatBytes(MAX_ARGV_BYTES)} travel`,
      'pass long lists in a file in the workspace, or through stdin')
  }
  // Repeating a single-valued option is not an error: the last one wins, as in most tools.
  const last = (name: string): string | undefined => values.get(name)?.at(-1)

  const spec: RunSpec = { argv: [...command], env: {}, cpus: 1, gpus: 0 }
  // Each -P is a pool or a shape; of each kind the last one given counts.
  for (const name of values.get('P') ?? []) {
    if (isShapeName(name)) Object.assign(spec, parseShape(name))
    else spec.pool = parsePoolName(name)
  }
  const cpus = last('cpus')
  if (cpus !== undefined) spec.cpus = parseCount(cpus, '--cpus', 0, MAX_CPUS)
  const mem = last('mem')
  if (mem !== undefined) spec.memBytes = parseSizeOption(mem, '--mem')
  const gpus = last('gpus')
  if (gpus !== undefined) spec.gpus = parseCount(gpus, '--gpus', 0, MAX_GPUS)
  const model = last('gpu-model')
  if (model !== undefined) {
    if (model.trim() === '') throw new UsageError('--gpu-model needs a model name, e.g. a100')
    spec.gpuModel = model.trim()
  }
  const gpuMem = last('gpu-mem')
  if (gpuMem !== undefined) spec.gpuMemBytes = parseSizeOption(gpuMem, '--gpu-mem')
  if (spec.gpus === 0 && (spec.gpuModel !== undefined || spec.gpuMemBytes !== undefined)) {
    const what = spec.gpuModel !== undefined ? `a GPU model (${spec.gpuModel})` : `GPU memory (${formatBytes(spec.gpuMemBytes!)})`
    throw new UsageError(`${what} was asked for without GPUs`, 'add --gpus N, or use -P gpu-N, gpu-MODEL or gpu-MODEL-N')
  }
  const labels = parseLabels(values.get('label') ?? [])
  if (labels !== undefined) spec.labels = labels
  for (const item of values.get('env') ?? []) {
    const [key, val] = parseEnvItem(item, env)
    spec.env[key] = val
  }
  const cwd = last('cwd')
  if (cwd !== undefined) spec.cwd = parseCwd(cwd)
  const opts: RunOptions = { spec, sync: !values.has('no-sync'), quiet: values.has('quiet') }
  const workspace = last('workspace')
  if (workspace !== undefined) {
    if (!opts.sync) throw new UsageError('--workspace and --no-sync contradict each other')
    if (workspace === '') throw new UsageError('--workspace needs a directory')
    opts.workspace = workspace
  }
  const on = last('on')
  if (on !== undefined) {
    if (on.trim() === '') throw new UsageError('--on needs a peer id, a unique prefix of one, or a host name')
    opts.on = on.trim()
  }
  return opts
}

const SHAPES = 'cpu-N, gpu-N, gpu-MODEL or gpu-MODEL-N, e.g. gpu-a100-2'

/**
 * `cpu-8` → 8 cores; `gpu-2` → 2 GPUs; `gpu-a100` → 1 GPU whose model contains "a100";
 * `gpu-a100-2` → 2 of them (the grammar is shapeName's, in common/resources.ts).
 */
export function parseShape (shape: string): Pick<RunSpec, 'cpus' | 'gpus' | 'gpuModel'> {
  const s = shapeName(shape)
  if (s === undefined) throw new UsageError(`-P ${shape}: not a resource shape (${SHAPES})`)
  if (s.kind === 'cpu') return { cpus: parseCount(s.count, `-P ${shape}: count`, 1, MAX_CPUS), gpus: 0 }
  const out: Pick<RunSpec, 'cpus' | 'gpus' | 'gpuModel'> = { cpus: 1, gpus: 1 }
  if (s.model !== undefined) out.gpuModel = s.model
  if (s.count === undefined) return out
  try {
    out.gpus = parseCount(s.count, `-P ${shape}: count`, 1, MAX_GPUS)
  } catch (err) {
    // `gpu-rtx-4090`: a model that ends in digits after a hyphen reads as a count
    if (s.model === undefined || !(err instanceof UsageError) || Number(s.count) <= MAX_GPUS) throw err
    throw new UsageError(err.message, `the number after the last hyphen is the count; for GPUs whose model contains "${s.model}-${s.count}", write -P gpu-${s.model}-${s.count}-1 (or --gpus 1 --gpu-model SUBSTR)`)
  }
  return out
}

/** A pool name as `vgrid agent --pool` accepts it. */
export function parsePoolName (name: string): string {
  if (!POOL_NAME_RE.test(name)) {
    const lower = name.toLowerCase()
    throw new UsageError(`-P ${name}: not a pool name or a resource shape`,
      lower !== name && POOL_NAME_RE.test(lower)
        ? `pool names are lowercase: -P ${lower}`
        : `a pool name is 1–63 of a-z 0-9 . _ - starting with a letter or digit; a shape is ${SHAPES}`)
  }
  return name
}

/** `--mem 16G`, `--gpu-mem 40G`: bytes, more than zero. */
export function parseSizeOption (value: string, what: string): number {
  let n: number
  try {
    n = parseSize(value, what)
  } catch (err) {
    if (err instanceof VgridError) throw new UsageError(err.message, err.hint)
    throw err
  }
  if (n === 0) throw new UsageError(`${what} ${value}: must be more than zero`, `leave ${what} out to ask for none`)
  if (n > MAX_REQUEST_BYTES) throw new UsageError(`${what} ${value} is too large`)
  return n
}

/** `--label k=v` items: every one must match; undefined when none was given. */
export function parseLabels (items: readonly string[]): Record<string, string> | undefined {
  if (items.length === 0) return undefined
  const labels: Record<string, string> = Object.create(null)
  for (const item of items) {
    const eq = item.indexOf('=')
    const key = eq === -1 ? item : item.slice(0, eq)
    if (eq === -1 || !LABEL_KEY_RE.test(key)) {
      throw new UsageError(`--label ${item}: expected KEY=VALUE`, 'a key is 1–63 of A-Z a-z 0-9 . _ / -, e.g. --label room=b12')
    }
    const value = item.slice(eq + 1)
    // eslint-disable-next-line no-control-regex
    if (value.length > MAX_LABEL_VALUE_CHARS || /[\x00-\x1f\x7f]/.test(value)) {
      throw new UsageError(`--label ${key}: the value is longer than ${MAX_LABEL_VALUE_CHARS} characters or holds control characters`)
    }
    if (Object.hasOwn(labels, key) && labels[key] !== value) {
      throw new UsageError(`--label ${key} is given twice with different values (${labels[key]}, ${value})`, 'a member has one value per label')
    }
    labels[key] = value
  }
  if (Object.keys(labels).length > MAX_LABELS) throw new UsageError(`at most ${MAX_LABELS} labels can be asked for`)
  return labels
}

export function parseCount (value: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${what} "${value}" is not a whole number`)
  const n = Number(value)
  if (n < min || n > max) throw new UsageError(`${what} ${value} is out of range (${min} to ${max})`)
  return n
}

/** `KEY=VAL` sets; `KEY` copies from our environment and must be set there. */
export function parseEnvItem (item: string, env: NodeJS.ProcessEnv): [string, string] {
  const eq = item.indexOf('=')
  const key = eq === -1 ? item : item.slice(0, eq)
  if (key === '' || key.includes('\0')) throw new UsageError(`-e ${item}: expected KEY=VAL or KEY`)
  if (eq !== -1) return [key, item.slice(eq + 1)]
  const val = env[key]
  if (val === undefined) throw new UsageError(`-e ${key}: ${key} is not set in this environment`, `set it, or pass a value: -e ${key}=VALUE`)
  return [key, val]
}

/** Relative and inside the workspace: the executor refuses anything else, so say it here first. */
function parseCwd (cwd: string): string {
  if (cwd === '') throw new UsageError('--cwd needs a directory')
  if (path.isAbsolute(cwd)) throw new UsageError(`--cwd ${cwd}: must be relative to the workspace`)
  const norm = path.posix.normalize(cwd.replaceAll('\\', '/'))
  if (norm === '..' || norm.startsWith('../')) throw new UsageError(`--cwd ${cwd}: leaves the workspace`)
  return norm
}

function parseTtyMode (v: string): TtyMode {
  if (v === 'yes' || v === 'no' || v === 'auto') return v
  throw new UsageError(`--tty ${v}: expected yes, no or auto`)
}
