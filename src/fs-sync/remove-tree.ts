/**
 * Removing a path and everything under it, however deep. Node's recursive rm works with full
 * paths, and a tree a command nested past the system's path limit (4,096 bytes on Linux) makes
 * it fail with ENAMETOOLONG: that copy or scratch directory could then never be cleaned. rm(1)
 * walks with openat/unlinkat and has no such limit; like Node's rm it never follows a link.
 */
import fs from 'node:fs/promises'
import { execFile } from 'node:child_process'
import { VgridError } from '../common/errors.js'
import { isCode } from './write-file.js'

export async function removeTree (abs: string): Promise<void> {
  try {
    await fs.rm(abs, { recursive: true, force: true })
  } catch (err) {
    if (!isCode(err, 'ENAMETOOLONG')) throw err
    await new Promise<void>((resolve, reject) => {
      execFile('rm', ['-rf', '--', abs], (e, _out, stderr) => {
        if (e === null) resolve()
        else reject(new VgridError('ERR_INTERNAL', `could not remove a tree deeper than the path limit: ${stderr.trim() || e.message}`))
      })
    })
  }
}
