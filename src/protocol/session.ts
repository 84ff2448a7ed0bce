/**
 * Messages of one command's session. The same shapes travel from the CLI to its agent over
 * the control socket and from the submitting agent to the executor over `/vgrid/exec/1.0.0`,
 * so an agent relays them without rewriting. Every message is validated on receipt.
 */
import { MAX_WIRE_TEXT, type WireError } from '../common/errors.js'
import { MAX_GPUS, MAX_GPU_INDEX, parseResourceRequest, type ResourceRequest } from '../common/resources.js'
import { type Obj, obj, str, optStr, int, bytes, strArray, strMap, oneOf, bad } from '../common/validate.js'

/** Output and stdin travel in chunks of at most this many bytes. */
export const MAX_DATA_CHUNK_BYTES = 1024 * 1024
/**
 * A command line as long as Linux takes one (ARG_MAX is 2 MiB with the usual 8 MiB stack):
 * `vrun sh -c '…' x $(seq 100000)` runs as it would here.
 */
export const MAX_ARGV_ITEMS = 100_000
export const MAX_ARGV_BYTES = 2 * 1024 * 1024
export const MAX_ARG_BYTES = 128 * 1024
export const MAX_ENV_ITEMS = 1024
/** Signals a submitter may forward. Others are refused. */
export const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGKILL', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const
export type ForwardedSignal = typeof FORWARDED_SIGNALS[number]

export interface TtyRequest { cols: number, rows: number, term: string }

/** What to run and what it needs (its resource fields are the one ResourceRequest): the body of a `run` (CLI) and of an `exec` (peer). */
export interface RunSpec extends ResourceRequest {
  argv: string[]
  env: Record<string, string>
  /** Relative to the workspace copy (or, with --no-sync, to a scratch directory). */
  cwd?: string
  tty?: TtyRequest
}

/** Sent by the submitter's side. */
export type ExecInput =
  | { t: 'stdin', data: Uint8Array }
  | { t: 'eof' }
  | { t: 'signal', sig: ForwardedSignal }
  | { t: 'resize', cols: number, rows: number }
  /** Nothing reads the command's stdout any more (exec/command.ts closeOutput). */
  | { t: 'close-out' }
  /** Cancel the task: its command is terminated (killed after a grace) and its sub-tasks cancelled. */
  | { t: 'cancel' }

/** Sent by the executor's side. */
export type ExecEvent =
  | { t: 'started', pid: number, peer: string, host: string, gpus: number[] }
  | { t: 'out', fd: 1 | 2, data: Uint8Array }
  /** `code` is what a shell would report: the exit status, or 128+N after signal N. */
  | { t: 'exit', code: number, signal?: string }
  | { t: 'error', error: WireError }
  /** Workspace sync progress: `up` = the workspace to the executor, `down` = outputs back. */
  | { t: 'sync', phase: 'up' | 'down', files: number, totalFiles: number, sentBytes: number, sentChunks: number, totalBytes: number, reusedBytes: number, done: boolean }
  /** Something the user must be told (a conflict on the way back), printed as `vrun: TEXT`. */
  | { t: 'notice', text: string, own?: boolean }
  /**
   * Before `exit`: the executor's copy changed; the submitter pulls `root` through `session`.
   * `exit` is the exit to come, so a bring-back that fails can still say how the command
   * ended (absent from executors older than it). `base`: the tree the command started from,
   * served in the same session, for an owner that re-attached (held.ts).
   */
  | { t: 'outputs', root: Uint8Array, session: string, exit?: { code: number, signal?: string }, base?: Uint8Array }
  /**
   * The command ended but sub-tasks it submitted still run (`done: false`), then all have
   * ended (`done: true`, before `exit`); `failed` counts those that did not succeed.
   */
  | { t: 'children', ids: string[], failed: number, done: boolean }

/** Where a run is placed, as its submitting agent tells whoever follows it (the CLI, the task manager). */
export type PlacementEvent =
  /** Every member that fits is busy (or the one named is away): the run waits; `message` says why. */
  | { t: 'queued', message: string }
  | { t: 'placed', peer: string, host: string, local: boolean }
  /** The member could not take it after all (no disk space, its sync or sandbox failed): placed again. */
  | { t: 'refused', peer: string, host: string, error: WireError }

/** Everything a run's follower is told: where it is placed, then its session's events. */
export type RunEvent = PlacementEvent | ExecEvent

/** What `argv` takes in a process's arguments: its bytes, a NUL each. */
export function argvBytes (argv: readonly string[]): number {
  let n = 0
  for (const a of argv) n += Buffer.byteLength(a) + 1
  return n
}

export function parseRunSpec (v: unknown): RunSpec {
  const m = obj(v, 'run spec')
  const argv = strArray(m.argv, 'argv', MAX_ARGV_ITEMS, MAX_ARG_BYTES)
  if (argv.length === 0) bad('argv is empty')
  if (argvBytes(argv) > MAX_ARGV_BYTES) bad(`argv is larger than ${MAX_ARGV_BYTES} bytes`)
  if (argv[0] === '') bad('argv[0] is empty')
  const spec: RunSpec = {
    argv,
    env: strMap(m.env ?? {}, 'env', MAX_ENV_ITEMS, MAX_ARG_BYTES),
    ...parseResourceRequest(m)
  }
  const cwd = optStr(m.cwd, 'cwd', 4096)
  if (cwd !== undefined) spec.cwd = cwd
  if (m.tty !== undefined && m.tty !== null) {
    const t = obj(m.tty, 'tty')
    spec.tty = {
      cols: int(t.cols, 'tty.cols', 1, 10000),
      rows: int(t.rows, 'tty.rows', 1, 10000),
      term: str(t.term ?? 'xterm-256color', 'tty.term', 128)
    }
  }
  return spec
}

export function parseExecInput (v: unknown): ExecInput {
  const m = obj(v)
  switch (m.t) {
    case 'stdin': return { t: 'stdin', data: bytes(m.data, 'data', MAX_DATA_CHUNK_BYTES) }
    case 'eof': return { t: 'eof' }
    case 'signal': return { t: 'signal', sig: oneOf(m.sig, 'sig', FORWARDED_SIGNALS) }
    case 'resize': return { t: 'resize', cols: int(m.cols, 'cols', 1, 10000), rows: int(m.rows, 'rows', 1, 10000) }
    case 'cancel': return { t: 'cancel' }
    case 'close-out': return { t: 'close-out' }
    default: return bad(`unknown input type ${String(m.t).slice(0, 32)}`)
  }
}

export function parseExecEvent (v: unknown): ExecEvent {
  const m = obj(v)
  switch (m.t) {
    case 'started': {
      const gpus = Array.isArray(m.gpus) && m.gpus.length <= MAX_GPUS ? m.gpus.map((g, i) => int(g, `gpus[${i}]`, 0, MAX_GPU_INDEX)) : bad('gpus is not a list')
      return { t: 'started', pid: int(m.pid, 'pid', 0, 2 ** 31), peer: str(m.peer, 'peer', 256), host: str(m.host, 'host', 256), gpus }
    }
    case 'out': return { t: 'out', fd: m.fd === 2 ? 2 : m.fd === 1 ? 1 : bad('fd is not 1 or 2'), data: bytes(m.data, 'data', MAX_DATA_CHUNK_BYTES) }
    case 'exit': return { t: 'exit', ...parseExit(m) }
    case 'error': {
      const e = obj(m.error, 'error')
      const error: WireError = { code: str(e.code, 'error.code', 64), message: str(e.message, 'error.message', MAX_WIRE_TEXT) }
      const hint = optStr(e.hint, 'error.hint', MAX_WIRE_TEXT)
      if (hint !== undefined) error.hint = hint
      return { t: 'error', error }
    }
    case 'sync': {
      const n = (k: string): number => int(m[k], k, 0, Number.MAX_SAFE_INTEGER)
      return {
        t: 'sync', phase: oneOf(m.phase, 'phase', ['up', 'down'] as const),
        files: n('files'), totalFiles: n('totalFiles'), sentBytes: n('sentBytes'), sentChunks: n('sentChunks'), totalBytes: n('totalBytes'), reusedBytes: n('reusedBytes'),
        done: m.done === true
      }
    }
    case 'notice': return m.own === true ? { t: 'notice', text: str(m.text, 'text', MAX_WIRE_TEXT), own: true } : { t: 'notice', text: str(m.text, 'text', MAX_WIRE_TEXT) }
    case 'outputs': {
      const root = bytes(m.root, 'root', 32)
      if (root.byteLength !== 32) bad('root is not a 32-byte hash')
      const session = str(m.session, 'session', 32)
      if (!/^[0-9a-f]{32}$/.test(session)) bad('session is not a session id')
      const out: ExecEvent = { t: 'outputs', root, session }
      if (m.exit !== undefined && m.exit !== null) out.exit = parseExit(obj(m.exit, 'exit'))
      if (m.base !== undefined && m.base !== null) {
        const base = bytes(m.base, 'base', 32)
        if (base.byteLength !== 32) bad('base is not a 32-byte hash')
        out.base = base
      }
      return out
    }
    case 'children': {
      const ids = Array.isArray(m.ids) && m.ids.length <= 100_000 ? m.ids.map((x, i) => str(x, `ids[${i}]`, 16)) : bad('ids is not a list')
      if (!ids.every((x) => /^[0-9a-f]{16}$/.test(x))) bad('ids are not task ids')
      return { t: 'children', ids, failed: int(m.failed, 'failed', 0, ids.length), done: m.done === true }
    }
    default: return bad(`unknown event type ${String(m.t).slice(0, 32)}`)
  }
}

function parseExit (m: Obj): { code: number, signal?: string } {
  const e: { code: number, signal?: string } = { code: int(m.code, 'code', 0, 255) }
  const signal = optStr(m.signal, 'signal', 32)
  if (signal !== undefined) e.signal = signal
  return e
}

/** How a command ended, for a sentence: `exited with 0`, `was killed by SIGKILL (exit status 137)`. */
export function describeExit (exit: { code: number, signal?: string } | undefined): string {
  if (exit === undefined) return 'ended'
  return exit.signal !== undefined ? `was killed by ${exit.signal} (exit status ${exit.code})` : `exited with ${exit.code}`
}

/** Exit status as a shell reports it. */
export function shellExitCode (code: number | null, signal: string | number | null, signalNumber: (s: string) => number): number {
  if (code !== null) return code & 0xff
  if (typeof signal === 'number') return 128 + signal
  if (typeof signal === 'string') return 128 + signalNumber(signal)
  return 255
}

