/**
 * Where a command runs on the executing machine, and with what environment: its working
 * directory inside the workspace (never through a symlink out of it), the agent's own
 * environment as the base, and `$VGRID_HOME/bin` so a task's `vrun`/`vbatch` reach this agent.
 */
import fs from 'node:fs/promises'
import { lstatSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { PACKAGE_ROOT } from '../../common/version.js'
import { VgridError } from '../../common/errors.js'

/** `cwd` from a peer: relative, inside the directory, no `..`, no NUL. */
export function safeCwd (root: string, cwd: string | undefined): string {
  if (cwd === undefined || cwd === '' || cwd === '.') return root
  if (cwd.includes('\0') || path.isAbsolute(cwd) || cwd.split(/[\\/]/).includes('..')) {
    throw new VgridError('ERR_BAD_ARGUMENT', `the working directory ${JSON.stringify(cwd)} is not a relative path inside the workspace`)
  }
  return path.join(root, cwd)
}

/**
 * Creates the working directory `cwd` under `root` one component at a time, refusing to pass
 * through a symlink: a workspace from a peer may hold `esc -> /elsewhere`, and `mkdir -p
 * root/esc/created` would then create directories (and run the command) outside it.
 */
export async function makeCwd (root: string, cwd: string): Promise<void> {
  // Blocking: a few microseconds of metadata per component, where a thread-pool round trip
  // each held every command's start.
  // the root is the agent's own (a scratch directory, a copy, the local workspace)
  mkdirSync(root, { recursive: true })
  const rel = path.relative(root, cwd)
  let dir = root
  for (const part of rel === '' ? [] : rel.split(path.sep)) {
    dir = path.join(dir, part)
    const st = lstatSync(dir, { throwIfNoEntry: false })
    if (st === undefined) {
      try { mkdirSync(dir) } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err }
      continue
    }
    if (st.isSymbolicLink()) {
      throw new VgridError('ERR_BAD_ARGUMENT', `the working directory ${JSON.stringify(rel)} passes through the symlink ${JSON.stringify(path.relative(root, dir))}`,
        'run the command from a real directory of the workspace')
    }
    if (!st.isDirectory()) throw new VgridError('ERR_BAD_ARGUMENT', `the working directory ${JSON.stringify(rel)}: ${JSON.stringify(path.relative(root, dir))} is not a directory`)
  }
}

/** The package's commands, by the names a script calls them: `$VGRID_HOME/bin` goes first on a task's PATH. */
export async function linkCommands (home: string): Promise<void> {
  const dir = path.join(home, 'bin')
  await fs.mkdir(dir, { recursive: true })
  const from = path.join(PACKAGE_ROOT, 'bin')
  for (const name of ['vgrid', 'vrun', 'vbatch']) {
    const link = path.join(dir, name)
    await fs.rm(link, { force: true })
    await fs.symlink(path.join(from, `${name}.js`), link)
  }
}

let envCopy: Readonly<Record<string, string>> | undefined

/**
 * The agent's own shell state, which says nothing about a command: where the agent was
 * started (PWD, OLDPWD; a command gets PWD = its own directory, as a shell would give it), the
 * last program its shell ran (_), and the terminal it was started from (TERM: a command gets
 * the user's under a terminal, and none on pipes, as over ssh), and the grid's join token, a
 * secret (the CLI drops it too, once read).
 */
const AGENT_ONLY_VARS: ReadonlySet<string> = new Set(['PWD', 'OLDPWD', '_', 'TERM', 'VGRID_JOIN_TOKEN'])

/**
 * The agent's environment, the base of every command's: copied once, as reading process.env
 * goes through the C library for each variable, on every command started.
 */
export function agentEnv (): Readonly<Record<string, string>> {
  if (envCopy === undefined) {
    const env: Record<string, string> = {}
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !AGENT_ONLY_VARS.has(k)) env[k] = v
    envCopy = Object.freeze(env)
  }
  return envCopy
}

