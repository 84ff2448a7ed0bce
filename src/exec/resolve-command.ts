/**
 * Finds the file a command name runs, as execvp(3) would, before anything is spawned: under a
 * pseudo-terminal a failed exec happens inside the forked child and would only show as an
 * obscure exit 1, and for plain pipes we want the same shell-like messages and codes.
 */
import path from 'node:path'
import { accessSync, statSync, constants as fsConstants } from 'node:fs'
import { DEFAULT_PATH, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND } from './constants.js'

export type Resolved =
  | { ok: true, file: string }
  /** `message` is what a shell prints after `vgrid: <cmd>: `. */
  | { ok: false, exitCode: number, message: string }

type Probe = 'ok' | 'missing' | 'denied' | 'directory'

/**
 * Blocking, like the shell's own lookup: a stat of a PATH entry takes microseconds, and a
 * thread-pool round trip for each of a long PATH cost about a millisecond of the agent's
 * main thread per command.
 */
function probe (file: string): Probe {
  try {
    const st = statSync(file, { throwIfNoEntry: false })
    if (st === undefined) return 'missing'
    if (st.isDirectory()) return 'directory'
    accessSync(file, fsConstants.X_OK)
    return st.isFile() ? 'ok' : 'denied'
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return code === 'EACCES' || code === 'EPERM' ? 'denied' : 'missing'
  }
}

/**
 * How a sandboxed command sees the machine: `cwd`, PATH and the answer are its paths, and
 * `toHost` says where one is here (undefined: it cannot see it).
 */
export interface PathView { toHost: (p: string) => string | undefined }

export async function resolveCommand (cmd: string, envPath: string | undefined, cwd: string, view?: PathView): Promise<Resolved> {
  const probeIn = (file: string): Probe => {
    if (view === undefined) return probe(file)
    const host = view.toHost(file)
    return host === undefined ? 'missing' : probe(host)
  }
  if (cmd.includes('/')) {
    const file = path.resolve(cwd, cmd)
    switch (probeIn(file)) {
      case 'ok': return { ok: true, file }
      case 'missing': return { ok: false, exitCode: EXIT_NOT_FOUND, message: 'No such file or directory' }
      case 'directory': return { ok: false, exitCode: EXIT_NOT_EXECUTABLE, message: 'Is a directory' }
      case 'denied': return { ok: false, exitCode: EXIT_NOT_EXECUTABLE, message: 'Permission denied' }
    }
  }
  let denied = false
  for (const dir of (envPath ?? DEFAULT_PATH).split(':')) {
    // An empty PATH entry means the current directory, as in execvp.
    const file = path.resolve(cwd, dir === '' ? '.' : dir, cmd)
    const p = probeIn(file)
    if (p === 'ok') return { ok: true, file }
    if (p === 'denied') denied = true
  }
  // execvp reports EACCES when some candidate existed but could not be run.
  return denied
    ? { ok: false, exitCode: EXIT_NOT_EXECUTABLE, message: 'Permission denied' }
    : { ok: false, exitCode: EXIT_NOT_FOUND, message: 'command not found' }
}
