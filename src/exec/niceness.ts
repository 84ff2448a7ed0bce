/**
 * Guest commands run below the owner's own work (`vgrid agent --nice N`, default 10).
 *
 * The niceness must be in place before the command runs its first instruction, so that
 * everything it starts inherits it: setting it on the pid after the spawn would race with a
 * script that forks at once, and Node cannot run code in the child between fork and exec.
 * The launcher (launcher.ts) can: its child sets the niceness before the exec. Node's spawn
 * and a terminal start the command through `nice -n N -- FILE ARGS…`, which sets its own
 * niceness and then execs FILE: the pid, and so the process group, signals and the `started`
 * event, are the command's own. (The command sees FILE, the resolved path, as its argv[0].)
 * Where no `nice` program exists the niceness is set on the pid right after the spawn, best
 * effort.
 */
import fs from 'node:fs'
import os from 'node:os'
import type { SpawnOptions } from './command.js'

/** Where `nice` is looked for; a fixed list, not PATH, which comes from the submitter. */
export const NICE_PATHS = ['/usr/bin/nice', '/bin/nice']
export const MAX_NICENESS = 19

/** What serveExec uses when it is not told: the agent sets it from its policy. */
let defaultNiceness = 0

/** The agent's `--nice`; commands started from now on get it. */
export function setDefaultNiceness (n: number): void {
  defaultNiceness = checkNiceness(n)
}

export function defaultNicenessValue (): number {
  return defaultNiceness
}

function checkNiceness (n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > MAX_NICENESS) throw new RangeError(`niceness ${n} is not a whole number from 0 to ${MAX_NICENESS}`)
  return n
}

let nicePath: string | null | undefined
function findNice (): string | null {
  nicePath ??= NICE_PATHS.find((p) => {
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  }) ?? null
  return nicePath
}

/**
 * How to start `file` with `argv` at niceness `n`: through `nice` (`after` is then a no-op),
 * or as it is, with `after(pid)` to call once it was spawned.
 */
export function niced (file: string, argv: string[], n: number): { file: string, argv: string[], after: (pid: number) => void } {
  const none = (): void => {}
  if (checkNiceness(n) === 0) return { file, argv, after: none }
  const nice = findNice()
  if (nice !== null) return { file: nice, argv: ['nice', '-n', String(n), '--', file, ...argv.slice(1)], after: none }
  return {
    file,
    argv,
    after: (pid) => {
      try {
        os.setPriority(pid, n)
      } catch {
        // it has exited already
      }
    }
  }
}

/**
 * The command line that starts `opts` at its niceness and on its cores, for a starter that
 * sets neither itself (Node's spawn, a terminal): `nice -n N -- [taskset -c CORES] FILE ARGS…`,
 * each only where asked and not `done` by the starter. The launcher (launcher.ts) sets both
 * in its child before the exec: two programs fewer per start, ~2.5–3 ms of a sandboxed
 * guest's ~15 ms on this 2-core VM. `after(pid)` is to be called once it was spawned.
 */
export function startLine (opts: Pick<SpawnOptions, 'file' | 'argv' | 'nice' | 'pin'>, done: { nice?: boolean, pin?: boolean } = {}): { file: string, argv: string[], after: (pid: number) => void } {
  let { file, argv } = opts
  const cores = opts.pin?.cores ?? []
  if (done.pin !== true && cores.length > 0 && opts.pin?.taskset !== undefined) {
    argv = ['taskset', '-c', cores.join(','), file, ...argv.slice(1)]
    file = opts.pin.taskset
  }
  if (done.nice === true) {
    checkNiceness(opts.nice ?? 0)
    return { file, argv, after: () => {} }
  }
  return niced(file, argv, opts.nice ?? 0)
}
