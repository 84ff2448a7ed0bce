import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DEFAULT_IGNORES, IgnoreRules, loadIgnoreRules } from '../../src/fs-sync/ignore-rules.js'
import { scanWorkspace } from '../../src/fs-sync/scan.js'
import type { DirNode } from '../../src/fs-sync/types.js'

describe('IgnoreRules', () => {
  it('ignores .git (directory or file) and nothing else by default', () => {
    expect(DEFAULT_IGNORES).toEqual(['.git'])
    const r = IgnoreRules.root()
    expect(r.ignores('.git', true)).toBe(true)
    expect(r.ignores('.git', false)).toBe(true) // a submodule's .git file
    expect(r.ignores('sub/.git', true)).toBe(true)
    expect(r.ignores('node_modules', true)).toBe(false)
    expect(r.ignores('.gitignore', false)).toBe(false)
  })

  it('lets the top .vgridignore undo a default', () => {
    const r = IgnoreRules.root().withFile('', '!.git\n')
    expect(r.ignores('.git', true)).toBe(false)
  })

  it('applies gitignore syntax: globs, anchors, dir-only patterns, negation', () => {
    const r = IgnoreRules.root().withFile('', ['*.log', '!keep.log', '/top-only', 'build/', 'docs/**/*.tmp', '# comment', ''].join('\n'))
    expect(r.ignores('a.log', false)).toBe(true)
    expect(r.ignores('deep/b.log', false)).toBe(true)
    expect(r.ignores('keep.log', false)).toBe(false)
    expect(r.ignores('top-only', false)).toBe(true)
    expect(r.ignores('sub/top-only', false)).toBe(false)
    expect(r.ignores('build', true)).toBe(true)
    expect(r.ignores('build', false)).toBe(false) // a file (or symlink) named build is kept
    expect(r.ignores('x/build', true)).toBe(true)
    expect(r.ignores('docs/a/b/c.tmp', false)).toBe(true)
    expect(r.ignores('c.tmp', false)).toBe(false)
  })

  it('is case-sensitive, as git is on Linux', () => {
    const r = IgnoreRules.root().withFile('', '*.o\n')
    expect(r.ignores('x.o', false)).toBe(true)
    expect(r.ignores('X.O', false)).toBe(false)
  })

  it('reads a nested file relative to its directory, and lets it override outer files', () => {
    let r = IgnoreRules.root().withFile('', '*.tmp\n/data\n')
    r = r.withFile('sub', '!*.tmp\n/data\n*.bin\n')
    expect(r.ignores('a.tmp', false)).toBe(true)
    expect(r.ignores('sub/a.tmp', false)).toBe(false) // re-included by the inner file
    expect(r.ignores('sub/data', false)).toBe(true) // anchored to sub/
    expect(r.ignores('sub/x/data', false)).toBe(false)
    expect(r.ignores('data', true)).toBe(true)
    expect(r.ignores('sub/x.bin', false)).toBe(true)
    expect(r.ignores('x.bin', false)).toBe(false) // inner rules do not reach outside
  })

  it('judges a path only by the rules that name it, once its parents are in (as git does)', () => {
    // git check-ignore: a/b/c is not ignored, a/b/d.o is (checked with git 2.x)
    const r = IgnoreRules.root().withFile('', 'a/b/\n*.o\n').withFile('a', '!b/\n')
    expect(r.ignores('a/b', true)).toBe(false)
    expect(r.ignores('a/b/c', false)).toBe(false)
    expect(r.ignores('a/b/d.o', false)).toBe(true)
  })
})

describe('scan with .vgridignore', () => {
  let root: string

  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'vgrid-ignore-'))
  })

  afterEach(async () => {
    await fs.rm(root, { recursive: true, force: true })
  })

  async function write (rel: string, content = 'x'): Promise<void> {
    await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true })
    await fs.writeFile(path.join(root, rel), content)
  }

  function paths (dir: DirNode, prefix = ''): string[] {
    const out: string[] = []
    for (const [name, node] of dir.entries) {
      const p = prefix + name
      out.push(node.kind === 'dir' ? p + '/' : p)
      if (node.kind === 'dir') out.push(...paths(node, p + '/'))
    }
    return out.sort()
  }

  it('applies files at several levels, negation and dir-only patterns', async () => {
    await write('.vgridignore', '*.log\nbuild/\n!important.log\n')
    await write('a.log')
    await write('important.log')
    await write('src/main.c')
    await write('src/debug.log')
    await write('build/out.o')
    await write('src/build') // a file: `build/` matches directories only
    await write('src/.vgridignore', '!*.log\nsecret/\n')
    await write('src/keep.log')
    await write('src/secret/key')
    await write('src/sub/secret') // a file named secret: kept
    await write('node_modules/pkg/index.js')
    await write('.git/HEAD')
    await write('.git/objects/ab')

    const scan = await scanWorkspace(root)
    expect(paths(scan.tree)).toEqual([
      '.vgridignore',
      'important.log',
      'node_modules/',
      'node_modules/pkg/',
      'node_modules/pkg/index.js',
      'src/',
      'src/.vgridignore',
      'src/build',
      'src/debug.log',
      'src/keep.log',
      'src/main.c',
      'src/sub/',
      'src/sub/secret'
    ])
  })

  it('does not look inside an excluded directory', async () => {
    await write('.vgridignore', 'cache/\n')
    await write('cache/.vgridignore', '!*\n')
    await write('cache/big')
    const scan = await scanWorkspace(root)
    expect(paths(scan.tree)).toEqual(['.vgridignore'])
  })
})

describe('loadIgnoreRules (paths outside a walk)', () => {
  let root: string

  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'vgrid-ignore-'))
  })

  afterEach(async () => {
    await fs.rm(root, { recursive: true, force: true })
  })

  it('reads the files along the path, and excludes what is below an excluded directory', async () => {
    await fs.mkdir(path.join(root, 'src/gen'), { recursive: true })
    await fs.writeFile(path.join(root, '.vgridignore'), '*.o\nout/\n')
    await fs.writeFile(path.join(root, 'src/.vgridignore'), '!keep.o\ngen/\n')
    const outside = path.join(root, '..', path.basename(root) + '-outside')
    await fs.mkdir(outside, { recursive: true })
    await fs.writeFile(path.join(outside, '.vgridignore'), '*\n')
    await fs.symlink(outside, path.join(root, 'link'))
    try {
      const rules = await loadIgnoreRules(root)
      expect(rules.ignores('a.o', false)).toBe(true)
      expect(rules.ignores('src/keep.o', false)).toBe(false) // re-included by src/.vgridignore
      expect(rules.ignores('src/other.o', false)).toBe(true)
      expect(rules.ignores('src/gen/x.c', false)).toBe(true)
      expect(rules.ignores('out/deep/x.c', false)).toBe(true) // out/ need not exist
      expect(rules.ignores('new/dir/x.c', false)).toBe(false)
      expect(rules.ignores('.git/config', false)).toBe(true)
      expect(rules.ignores('link/x.c', false)).toBe(false) // the file behind the symlink is not read
    } finally {
      await fs.rm(outside, { recursive: true, force: true })
    }
  })
})
