import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { VgridError } from '../../src/common/errors.js'
import {
  checkName, checkRelPath, compareNames, createSafeResolver, isEscapingLink, nameProblem, relPathProblem, safeResolve
} from '../../src/fs-sync/paths.js'

describe('checkName', () => {
  it.each([
    ['a.txt'],
    ['.hidden'],
    ['...'],
    ['with space'],
    ['new\nline'],
    ['日本語.txt'],
    ['emoji-😀'],
    ['x'.repeat(255)],
    ['é'.repeat(127)] // 254 bytes
  ])('accepts %j', (name) => {
    expect(nameProblem(name)).toBeUndefined()
    expect(checkName(name)).toBe(name)
  })

  it.each([
    ['', 'is empty'],
    ['.', "is '.'"],
    ['..', "is '..'"],
    ['a/b', 'separator'],
    ['/', 'separator'],
    ['a\\b', 'separator'],
    ['a\0b', 'NUL'],
    ['x'.repeat(256), 'longer than 255'],
    ['é'.repeat(128), 'longer than 255'], // 256 bytes in UTF-8, 128 in UTF-16
    ['bad\ud800', 'not valid Unicode']
  ])('refuses %j (%s)', (name, why) => {
    expect(nameProblem(name)).toContain(why)
    expect(() => checkName(name)).toThrow(VgridError)
    try { checkName(name) } catch (err) { expect((err as VgridError).code).toBe('ERR_UNSAFE_PATH') }
  })

  it('refuses what is not a string', () => {
    expect(nameProblem(42)).toBe('is not a string')
  })
})

describe('checkRelPath', () => {
  it.each([['a'], ['a/b/c.txt'], ['.git/config'], ['dir/日本/file']])('accepts %j', (p) => {
    expect(relPathProblem(p)).toBeUndefined()
    expect(checkRelPath(p)).toBe(p)
  })

  it.each([
    ['', 'empty'],
    ['/etc/passwd', 'absolute'],
    ['../x', "'..'"],
    ['a/../../x', "'..'"],
    ['a/./b', "'.'"],
    ['a//b', 'empty'],
    ['a/', 'empty'],
    ['a\\..\\b', 'separator'],
    ['a/b\0c', 'NUL'],
    [`a/${'x'.repeat(256)}`, 'longer']
  ])('refuses %j', (p, why) => {
    expect(relPathProblem(p)).toContain(why)
    expect(() => checkRelPath(p)).toThrow(/ERR_UNSAFE_PATH|path/)
  })
})

describe('isEscapingLink', () => {
  it.each([
    ['l', 'target', false],
    ['l', './target', false],
    ['a/l', '../target', false],
    ['a/b/l', '../../x', false],
    ['a/b/l', '../c/../../y', false],
    ['l', '..', true],
    ['l', '../x', true],
    ['a/l', '../../x', true],
    ['a/l', 'b/../../../x', true],
    ['l', '/etc/passwd', true],
    ['l', '', true]
  ])('%s -> %s escapes: %s', (at, target, escapes) => {
    expect(isEscapingLink(at, target)).toBe(escapes)
  })
})

describe('compareNames', () => {
  it('orders like the bytes of UTF-8, not like UTF-16', () => {
    const names = ['b', 'a', 'ab', '\uffff', '😀', '\ue000', 'Z', 'é', '', 'a\u0000']
    const byBytes = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    expect([...names].sort(compareNames)).toEqual(byBytes)
    // JS's default order puts the surrogate pair before U+E000 / U+FFFF: UTF-8 does not
    expect(['😀', '\uffff'].sort()).toEqual(['😀', '\uffff'])
    expect(['😀', '\uffff'].sort(compareNames)).toEqual(['\uffff', '😀'])
  })

  it('agrees with Buffer.compare on random strings', () => {
    const alphabet = ['a', 'b', 'é', '\ud7ff', '\ue000', '\uffff', '😀', '𝄞', '\u0080']
    let seed = 7
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n }
    for (let i = 0; i < 2000; i++) {
      const a = Array.from({ length: rnd(4) }, () => alphabet[rnd(alphabet.length)]).join('')
      const b = Array.from({ length: rnd(4) }, () => alphabet[rnd(alphabet.length)]).join('')
      expect(Math.sign(compareNames(a, b))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))))
    }
  })
})

describe('safeResolve', () => {
  let tmp: string
  let root: string
  let outside: string

  beforeEach(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vgrid-paths-'))
    root = path.join(tmp, 'ws')
    outside = path.join(tmp, 'outside')
    await fs.mkdir(path.join(root, 'real', 'deep'), { recursive: true })
    await fs.mkdir(outside)
    await fs.symlink(outside, path.join(root, 'escape'))
    await fs.symlink('real', path.join(root, 'inside-link'))
    await fs.writeFile(path.join(root, 'file'), 'x')
  })

  afterEach(async () => {
    await fs.rm(tmp, { recursive: true, force: true })
  })

  it('resolves paths below real directories, existing or not', async () => {
    expect(await safeResolve(root, 'real/deep/x.txt')).toBe(path.join(root, 'real/deep/x.txt'))
    expect(await safeResolve(root, 'new/dirs/x.txt')).toBe(path.join(root, 'new/dirs/x.txt'))
    expect(await safeResolve(root, 'top.txt')).toBe(path.join(root, 'top.txt'))
  })

  it('allows the last component to be a symlink (it is replaced, not followed)', async () => {
    expect(await safeResolve(root, 'escape')).toBe(path.join(root, 'escape'))
  })

  it('refuses a parent that is a symlink pointing outside', async () => {
    await expect(safeResolve(root, 'escape/pwned.txt')).rejects.toMatchObject({ code: 'ERR_UNSAFE_PATH' })
    await expect(safeResolve(root, 'escape/a/b.txt')).rejects.toThrow(/symlink/)
    await expect(fs.readdir(outside)).resolves.toEqual([])
  })

  it('refuses a symlinked parent even when it points inside', async () => {
    await expect(safeResolve(root, 'inside-link/x')).rejects.toMatchObject({ code: 'ERR_UNSAFE_PATH' })
  })

  it('refuses a parent that is a file', async () => {
    await expect(safeResolve(root, 'file/x')).rejects.toThrow(/not a directory/)
  })

  it('refuses unsafe relative paths before touching the disk', async () => {
    for (const p of ['../x', '/etc/passwd', 'a/../../x', '']) {
      await expect(safeResolve(root, p)).rejects.toMatchObject({ code: 'ERR_UNSAFE_PATH' })
    }
  })

  it('createSafeResolver gives the same answers', async () => {
    const resolve = createSafeResolver(root)
    expect(await resolve('real/deep/x')).toBe(path.join(root, 'real/deep/x'))
    expect(await resolve('real/deep/y')).toBe(path.join(root, 'real/deep/y'))
    await expect(resolve('escape/x')).rejects.toMatchObject({ code: 'ERR_UNSAFE_PATH' })
    await expect(resolve('../x')).rejects.toMatchObject({ code: 'ERR_UNSAFE_PATH' })
  })
})
