/** Public types of the exec module (see index.ts). */
import type { GroupLedger } from './orphans.js'
import type { WireError } from '../common/errors.js'
import type { Logger } from '../common/log.js'
import type { RunSpec } from '../protocol/session.js'
import type { Sandbox } from './sandbox.js'
import type { FifoMaker } from './fifos.js'

/**
 * A GPU this machine lends. Structurally the grid's `GpuInfo` (src/grid/types.ts): exec does
 * not import grid (DESIGN §1), the agent passes the grid's objects as they are.
 */
export interface LentGpu {
  /** Index as `nvidia-smi` / `rocm-smi` number it on this machine. */
  index: number
  /** "NVIDIA", "AMD", …: picks the visibility variables set for the task. */
  vendor: string
  model: string
  memoryBytes: number
  uuid?: string
}

export interface ServeExecOptions {
  spec: RunSpec
  /** Absolute directory on this machine where the command runs; must exist. */
  cwd: string
  /** The full environment prepared by the agent; spec.env goes on top, then the GPU variables. */
  env: Record<string, string>
  /** GPUs assigned to this command, whole and exclusively; may be empty. */
  gpus: LentGpu[]
  /** Whether this machine has GPUs at all: then a command given none is hidden from them. */
  machineHasGpus: boolean
  /** This agent's peer id and host name, reported in the `started` event. */
  peer: string
  host: string
  /** Aborted when the agent stops: the command is killed (gracefully first). */
  signal?: AbortSignal
  /** Between the polite signal and SIGKILL. Default KILL_GRACE_MS. */
  killGraceMs?: number
  /** Grace between SIGTERM and SIGKILL when `signal` aborts (the agent is stopping); default killGraceMs. */
  abortGraceMs?: number
  /** Told of the command's process group while it runs, so a killed agent's next start can stop it. */
  groups?: GroupLedger
  /** The task the command runs for, written down with its group. */
  task?: string
  /** Niceness of the command and all it starts, 0–19; default: the agent's `--nice` (niceness.ts). */
  nice?: number
  /** Runs the command in this sandbox (a guest's); `cwd` is then where bwrap starts, and `sandbox.cwd` the command's. */
  sandbox?: Sandbox
  /** Makes the command's stdio pipes (fifos.ts); default: one for the process, in a temporary directory. */
  fifos?: FifoMaker
  /** Diagnostics: refused inputs (warn), cancellations and quirks (debug). Default: the `vgrid:exec` logger. */
  log?: Logger
}

/** How a command ended: one shape whether it succeeded, failed, was killed or never started. */
export interface ExecResult {
  /** What a shell would report: exit status, 128+N after signal N, 127/126 when it could not run, 255 on an internal failure. */
  exitCode: number
  /** Name of the signal that killed it (`SIGKILL`), if one did. */
  signal?: string
  /** From spawn to exit (0 when nothing was spawned). */
  durationMs: number
  /** Whether a process was created. */
  started: boolean
  /** Whether we killed it because the submitter went away or the agent is stopping. */
  cancelled: boolean
  /**
   * Set when the command could not be started (other than not found / not executable), or
   * when a malformed input ended the session (ERR_BAD_MESSAGE); the submitter got it as an
   * `error` event.
   */
  error?: WireError
}
