/** What serve.ts needs from a started command, whichever way it was spawned. */
import os from 'node:os'
import { shellExitCode } from '../protocol/session.js'

/** Hands output on; resolves when the next chunk may be read (backpressure). Never rejects. */
export type OutputSink = (fd: 1 | 2, data: Uint8Array) => Promise<void>

export interface RawStatus { code: number | null, signal: NodeJS.Signals | null }

export interface RunningCommand {
  readonly pid: number
  /** Process group that signals and cancellation go to. */
  readonly pgid: number
  /** What cancellation sends before SIGKILL. */
  readonly politeSignal: NodeJS.Signals
  /** Resolves when the leading process has exited; output may still be draining. */
  readonly exited: Promise<void>
  /** Resolves once it exited and every byte of its output was handed to the sink. */
  readonly done: Promise<RawStatus>
  /** Resolves when more input may be written (bounded buffering). Never rejects. */
  write (data: Uint8Array): Promise<void>
  /** End of input. */
  end (): void
  resize (cols: number, rows: number): void
  /**
   * Whoever read its stdout went away (`vrun cmd | head`): our end of the pipe is closed, so
   * the command's next write gets SIGPIPE, as in a local pipeline. A terminal has no such end.
   * Resolves once our end is closed, so the inputs after it find it closed.
   */
  closeOutput (): Promise<void>
  /** A forwarded signal. */
  signal (sig: NodeJS.Signals): void
}

export interface SpawnOptions {
  /** Absolute path of the executable (resolve-command.ts). */
  file: string
  argv: string[]
  cwd: string
  env: Record<string, string>
  /**
   * Called with the pid (which leads the command's own process group) as soon as the process
   * exists, before anything else runs: a record of it made later could miss an agent killed
   * in between.
   */
  onPid?: (pid: number) => void
  /** The niceness it starts at, before its first instruction (0 or none: the agent's own). */
  nice?: number
  /** The cores it is pinned to, and where taskset is for a starter that cannot pin by itself. */
  pin?: { cores: number[], taskset?: string }
}

export function signalName (n: number): NodeJS.Signals | null {
  for (const [name, num] of Object.entries(os.constants.signals)) if (num === n) return name as NodeJS.Signals
  return null
}

export function signalNumber (name: string): number {
  return (os.constants.signals as Record<string, number>)[name] ?? 0
}

/** The exit code a shell would show, and the signal name when one killed the command. */
export function exitStatus (raw: RawStatus): { code: number, signal?: string } {
  const code = shellExitCode(raw.code, raw.signal, signalNumber)
  return raw.signal === null ? { code } : { code, signal: raw.signal }
}
