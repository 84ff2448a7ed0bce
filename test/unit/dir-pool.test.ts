/**
 * The pool of empty directories runs take and give back (dir-pool.ts): one comes back into
 * use only as it was handed out, never with something a run left in it.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DIR_POOL_MAX, DirPool } from '../../src/agent/dir-pool.js'
import { removeTempDirs, tempDir } from '../helpers/procs.js'

afterEach(removeTempDirs)

describe('DirPool', () => {
  it('hands out new private directories, and one given back empty again', () => {
    const pool = new DirPool(tempDir())
    const a = pool.take()
    const b = pool.take()
    expect(a.fresh && b.fresh).toBe(true)
    expect(a.dir).not.toBe(b.dir)
    expect(fs.statSync(a.dir).mode & 0o777).toBe(0o700)
    expect(pool.give(a.dir)).toBe(true)
    expect(pool.take()).toEqual({ dir: a.dir, fresh: false })
    expect(pool.take().fresh).toBe(true)
  })

  it('refuses what a run left anything in: a file, a link, a directory of another name or not empty', () => {
    const root = tempDir()
    const outside = tempDir('vgrid-outside-')
    const pool = new DirPool(root, ['work'])
    const cases: Array<(d: string) => void> = [
      (d) => { fs.writeFileSync(path.join(d, 'f'), 'x') },
      (d) => { fs.symlinkSync(outside, path.join(d, 'work')) },
      (d) => { fs.mkdirSync(path.join(d, 'other')) },
      (d) => { fs.mkdirSync(path.join(d, 'work')); fs.writeFileSync(path.join(d, 'work', 'f'), 'x') },
      (d) => { fs.mkdirSync(path.join(d, 'work')); fs.mkdirSync(path.join(d, 'x')) },
      (d) => { fs.rmdirSync(d) }
    ]
    for (const leave of cases) {
      const { dir } = pool.take()
      leave(dir)
      expect(pool.give(dir)).toBe(false)
    }
    // none of them is handed out again
    const seen = new Set<string>()
    for (let i = 0; i < cases.length; i++) seen.add(pool.take().dir)
    expect([...seen].every((d) => fs.readdirSync(d).length === 0)).toBe(true)
  })

  it('keeps each shape apart: a directory with its mount point goes to a run that asks for it', () => {
    const pool = new DirPool(tempDir(), ['work'])
    const withWork = pool.take('work')
    expect(fs.readdirSync(withWork.dir)).toEqual(['work'])
    const empty = pool.take()
    expect(pool.give(withWork.dir)).toBe(true)
    expect(pool.give(empty.dir)).toBe(true)
    expect(pool.take().dir).toBe(empty.dir)
    expect(pool.take('work').dir).toBe(withWork.dir)
  })

  it('keeps at most DIR_POOL_MAX of a shape', () => {
    const pool = new DirPool(tempDir())
    const dirs = Array.from({ length: DIR_POOL_MAX + 1 }, () => pool.take().dir)
    expect(dirs.map((d) => pool.give(d)).filter((kept) => !kept)).toHaveLength(1)
  })
})
