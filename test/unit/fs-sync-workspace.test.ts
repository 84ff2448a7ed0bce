/**
 * Which directory is the workspace: the git top-level, VGRID_WORKSPACE inside a task, or
 * --workspace; and the errors a user sees when none of them makes sense.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { findWorkspace, checkRunDir } from '../../src/fs-sync/workspace.js'

let tmp: string
beforeEach(() => { tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-wsfind-'))) })
afterEach(() => { fs.rmSync(tmp, { recursive: true, force: true }) })

describe('findWorkspace', () => {
  it('is the git top-level above the current directory, else the current directory', () => {
    fs.mkdirSync(path.join(tmp, 'repo/.git'), { recursive: true })
    fs.mkdirSync(path.join(tmp, 'repo/src/deep'), { recursive: true })
    expect(findWorkspace(path.join(tmp, 'repo/src/deep'))).toEqual({ dir: path.join(tmp, 'repo'), cwd: 'src/deep' })
    fs.mkdirSync(path.join(tmp, 'plain/sub'), { recursive: true })
    expect(findWorkspace(path.join(tmp, 'plain/sub'))).toEqual({ dir: path.join(tmp, 'plain/sub'), cwd: '' })
  })

  it('takes --workspace, relative to the current directory, when it contains it', () => {
    fs.mkdirSync(path.join(tmp, 'proj/a'), { recursive: true })
    expect(findWorkspace(path.join(tmp, 'proj/a'), '..')).toEqual({ dir: path.join(tmp, 'proj'), cwd: 'a' })
  })

  it('says plainly what is wrong with a --workspace that cannot be one', () => {
    fs.mkdirSync(path.join(tmp, 'here'))
    fs.writeFileSync(path.join(tmp, 'file'), 'x')
    const here = path.join(tmp, 'here')
    expect(() => findWorkspace(here, '../missing')).toThrow(`the workspace does not exist: ${path.join(tmp, 'missing')}`)
    expect(() => findWorkspace(here, '../file')).toThrow(`the workspace is not a directory: ${path.join(tmp, 'file')}`)
    fs.mkdirSync(path.join(tmp, 'elsewhere'))
    expect(() => findWorkspace(here, '../elsewhere')).toThrow(`the current directory ${here} is not inside the workspace ${path.join(tmp, 'elsewhere')}`)
  })
})

describe('checkRunDir (--cwd)', () => {
  it('accepts a directory of the workspace, and names what is wrong otherwise', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-cwd-'))
    try {
      fs.mkdirSync(path.join(root, 'src/lib'), { recursive: true })
      fs.writeFileSync(path.join(root, 'file.txt'), '')
      const ws = findWorkspace(root)
      expect(() => { checkRunDir(ws, 'src/lib') }).not.toThrow()
      expect(() => { checkRunDir(ws, 'typo/dir') }).toThrow(/--cwd typo\/dir: .* is not a directory of the workspace/)
      expect(() => { checkRunDir(ws, 'file.txt') }).toThrow(/is not a directory of the workspace/)
      // nothing was made for the typo
      expect(fs.existsSync(path.join(root, 'typo'))).toBe(false)
    } finally {
      fs.rmSync(root, { recursive: true, force: true })
    }
  })
})
