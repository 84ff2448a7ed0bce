/**
 * Which directory is the workspace: the top of the git work tree when the current directory
 * is inside one (found by walking up to a `.git` entry, without starting git), else the
 * current directory; `--workspace DIR` overrides. Imported by the CLI: keep it light.
 */
import fs from 'node:fs'
import path from 'node:path'
import { VgridError } from '../common/errors.js'

export interface WorkspaceRef {
  /** Absolute, real path of the workspace root. */
  dir: string
  /** The current directory relative to it ('' at the root), '/'-separated. */
  cwd: string
}

export function findWorkspace (cwd: string, explicit?: string): WorkspaceRef {
  const here = realDir(cwd, 'the current directory')
  let root: string
  if (explicit !== undefined) {
    root = realDir(path.resolve(cwd, explicit), `the workspace ${explicit}`)
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
      'run vrun from inside the workspace, or give --workspace a directory that contains the current one')
  }
  return { dir: root, cwd: rel.split(path.sep).join('/') }
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
