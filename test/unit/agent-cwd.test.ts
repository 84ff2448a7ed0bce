/**
 * Issue 15 §6: a working directory sent by a peer never passes through a symlink. Before, the
 * executor ran `mkdir -p` on it: with `esc -> /elsewhere` in the workspace copy, `cwd:
 * "esc/created/deeper"` made directories outside the copy and ran the command there.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { makeCwd } from '../../src/agent/run/index.js'
import { tempDir } from '../helpers/procs.js'

describe('makeCwd', () => {
  it('creates a missing working directory inside the workspace', async () => {
    const root = tempDir()
    await makeCwd(root, path.join(root, 'a/b/c'))
    expect(fs.statSync(path.join(root, 'a/b/c')).isDirectory()).toBe(true)
    await makeCwd(root, path.join(root, 'a/b/c'))
    await makeCwd(root, root)
  })

  it('refuses a working directory through a symlink out of the workspace, creating nothing there', async () => {
    const root = tempDir()
    const outside = tempDir('vgrid-outside-')
    fs.symlinkSync(outside, path.join(root, 'esc'))
    await expect(makeCwd(root, path.join(root, 'esc/created/deeper'))).rejects.toMatchObject({ code: 'ERR_BAD_ARGUMENT', message: expect.stringContaining('symlink') })
    await expect(makeCwd(root, path.join(root, 'esc'))).rejects.toMatchObject({ code: 'ERR_BAD_ARGUMENT' })
    expect(fs.readdirSync(outside)).toEqual([])
  })

  it('refuses a link further down, and a file where a directory should be', async () => {
    const root = tempDir()
    fs.mkdirSync(path.join(root, 'real'))
    fs.symlinkSync('/', path.join(root, 'real/up'))
    fs.writeFileSync(path.join(root, 'file'), 'x')
    await expect(makeCwd(root, path.join(root, 'real/up/tmp'))).rejects.toMatchObject({ code: 'ERR_BAD_ARGUMENT' })
    await expect(makeCwd(root, path.join(root, 'file/sub'))).rejects.toMatchObject({ code: 'ERR_BAD_ARGUMENT' })
    expect(fs.existsSync('/tmp/sub')).toBe(false)
  })
})
