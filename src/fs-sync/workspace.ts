/**
 * Which directory is the workspace: the top of the git work tree when the current directory
 * is inside one (found by walking up to a `.git` entry, without starting git), else the
 * current directory; `--workspace DIR` overrides. Inside a task, VGRID_WORKSPACE names the root
 * of the task's copy of its workspace, which has no `.git`: a `vrun` or `vbatch` from inside
 * that copy syncs the whole copy, as the same command in the original work tree would.
 * Imported by the CLI: keep it light.
 */
import fs from 'node:fs'
import path from 'node:path'
import { VgridError } from '../common/errors.js'

export interface WorkspaceRef {
  /** Absolute, real path of the workspace root. */
  dir: string
  /** The current directory relative to it ('' at the root), '/'-separated. */
  cwd: string
  /**
   * Where the command must see the workspace when that is not `dir`: a guest's sub-task
   * works in the guest's copy here, at its user's path (agent/guest-control.ts).
   */
  mount?: string
}

/** `env` is read for VGRID_WORKSPACE only; pass the process's from the CLI. */
export function findWorkspace (cwd: string, explicit?: string, env: NodeJS.ProcessEnv = {}): WorkspaceRef {
  const here = realDir(cwd, 'the current directory')
  let root: string
  const taskRoot = explicit === undefined ? taskWorkspace(here, env) : undefined
  if (explicit !== undefined) {
    root = realDir(path.resolve(cwd, explicit), 'the workspace')
  } else if (taskRoot !== undefined) {
    root = taskRoot
  } else {
    root = here
    for (let dir = here; ; dir = path.dirname(dir)) {
      if (fs.existsSync(path.join(dir, '.git'))) { root = dir; break }
      if (path.dirname(dir) === dir) break
    }
  }
  const rel = path.relative(root, here)
  if (rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new VgridError('ERR_BAD_ARGUMENT', `the current directory ${here} is not inside the workspace ${root}`,
      'run the command from inside the workspace, or give --workspace a directory that contains the current one')
  }
  return { dir: root, cwd: rel.split(path.sep).join('/') }
}

/**
 * `--cwd DIR` (relative to the workspace, already checked not to leave it) must be a directory
 * of the workspace: the command runs in the copy of it, and a typo would otherwise run in an
 * empty directory made for it.
 */
export function checkRunDir (ws: WorkspaceRef, rel: string): void {
  const abs = path.join(ws.dir, rel)
  if (fs.statSync(abs, { throwIfNoEntry: false })?.isDirectory() !== true) {
    throw new VgridError('ERR_BAD_ARGUMENT', `--cwd ${rel}: ${abs} is not a directory of the workspace`,
      'give a directory relative to the workspace root (see `vrun --help`)')
  }
}

/** VGRID_WORKSPACE when it names a directory that contains `here` (already real). */
function taskWorkspace (here: string, env: NodeJS.ProcessEnv): string | undefined {
  const dir = env.VGRID_WORKSPACE
  if (dir === undefined || dir === '' || !path.isAbsolute(dir)) return undefined
  let real: string
  try {
    real = fs.realpathSync(dir)
  } catch {
    return undefined
  }
  const rel = path.relative(real, here)
  return rel.startsWith('..') || path.isAbsolute(rel) ? undefined : real
}

function realDir (p: string, what: string): string {
  let real: string
  try {
    real = fs.realpathSync(p)
  } catch {
    throw new VgridError('ERR_BAD_ARGUMENT', `${what} does not exist: ${p}`)
  }
  if (!fs.statSync(real).isDirectory()) throw new VgridError('ERR_BAD_ARGUMENT', `${what} is not a directory: ${p}`)
  return real
}
