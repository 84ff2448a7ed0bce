/**
 * The check of a workspace copy before it is reused: what was written into it since its last
 * sync is found by stat alone, and the sync that follows puts the tree's files back, never
 * writing through a link that was planted there.
 */
import fs from 'node:fs/promises'
import { existsSync, utimesSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { materialize } from '../../src/fs-sync/materialize.js'
import { checkCopy, markChanged } from '../../src/fs-sync/copy-check.js'
import { StatCache } from '../../src/fs-sync/stat-cache.js'
import { utimeSeconds } from '../../src/fs-sync/write-file.js'
import type { DirNode, FileNode } from '../../src/fs-sync/types.js'
import { buildTree, ChunkMap, file, link, readDisk, TEST_MTIME_MS, type DirSpec } from '../helpers/fs-sync-trees.js'
import { waitFor } from '../helpers/wait.js'

let tmp: string
let copy: string
let sentinel: string

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vgrid-copy-check-'))
  copy = path.join(tmp, 'copy')
  sentinel = path.join(tmp, 'sentinel')
  await fs.mkdir(sentinel)
  await fs.writeFile(path.join(sentinel, 'secret'), 'untouched')
})

afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true })
})

const PROJECT: DirSpec = {
  'README.md': '# hello\n',
  '.vgridignore': 'build/\n',
  src: { 'main.c': 'int main() { return 0; }\n', lib: { 'util.c': 'void f() {}\n' } },
  bin: { 'build.sh': file('#!/bin/sh\nmake\n', { exec: true }) },
  latest: link('src/main.c')
}

const DISK = {
  'README.md': '# hello\n',
  '.vgridignore': 'build/\n',
  src: { 'main.c': 'int main() { return 0; }\n', lib: { 'util.c': 'void f() {}\n' } },
  bin: { 'build.sh': '#!/bin/sh\nmake\n' },
  latest: '-> src/main.c'
}

/** A copy of PROJECT as a sync leaves it, and a stat cache that knows its files. */
async function freshCopy (chunks = new ChunkMap()): Promise<{ tree: DirNode, cache: StatCache, written: Array<[string, FileNode]> }> {
  const tree = buildTree(PROJECT, chunks)
  await materialize(copy, undefined, tree, chunks.reader)
  const cache = StatCache.empty(undefined, { racyMarginMs: 0 })
  const files: Array<[string, FileNode]> = []
  const walk = (d: DirNode, rel: string): void => {
    for (const [name, n] of d.entries) {
      const p = rel === '' ? name : `${rel}/${name}`
      if (n.kind === 'file') files.push([p, n])
      else if (n.kind === 'dir') walk(n, p)
    }
  }
  walk(tree, '')
  // written "earlier": ctimes are settled by the time the check runs
  await new Promise((resolve) => setTimeout(resolve, 5))
  await cache.beginScanWith(copy, files)
  return { tree, cache, written: files }
}

async function changedPaths (tree: DirNode, cache?: StatCache): Promise<string[]> {
  const check = await checkCopy(copy, tree, cache !== undefined ? { statCache: cache } : {})
  if ('unusable' in check) throw new Error(check.unusable)
  return [...check.changed].sort()
}

describe('checkCopy', () => {
  it('finds nothing in a copy as its sync left it', async () => {
    const { tree, cache } = await freshCopy()
    expect(await changedPaths(tree, cache)).toEqual([])
  })

  it('finds edits, strays, deletions and entries of another kind, and leaves ignored paths alone', async () => {
    const { tree, cache } = await freshCopy()
    await fs.writeFile(path.join(copy, 'README.md'), '# HELLO\n') // same size, new mtime
    await fs.appendFile(path.join(copy, 'src/main.c'), '// more\n')
    await fs.writeFile(path.join(copy, 'src/lib/stray.c'), 'planted')
    await fs.rm(path.join(copy, 'bin/build.sh'))
    await fs.rm(path.join(copy, 'src/lib/util.c'))
    await fs.symlink(path.join(sentinel, 'secret'), path.join(copy, 'src/lib/util.c'))
    await fs.rm(path.join(copy, 'latest'))
    await fs.symlink('README.md', path.join(copy, 'latest'))
    await fs.mkdir(path.join(copy, 'build'))
    await fs.writeFile(path.join(copy, 'build/cache.o'), 'kept as every sync keeps it')
    await fs.mkdir(path.join(copy, '.git'))
    expect(await changedPaths(tree, cache)).toEqual(['README.md', 'bin/build.sh', 'latest', 'src/lib/stray.c', 'src/lib/util.c', 'src/main.c'])
  })

  it('sees a rewrite that kept size and mtime by its ctime and inode', async () => {
    const { tree, cache } = await freshCopy()
    const p = path.join(copy, 'README.md')
    await fs.writeFile(p, '# HELLO\n')
    utimesSync(p, utimeSeconds(TEST_MTIME_MS), utimeSeconds(TEST_MTIME_MS))
    expect(await changedPaths(tree, cache)).toEqual(['README.md'])
    // without the cache only size, mtime and type tell
    expect(await changedPaths(tree)).toEqual([])
    // put back to the millisecond only (a Date): the cache's nanoseconds tell as well
    const q = path.join(copy, 'src/main.c')
    const before = await fs.stat(q)
    await fs.writeFile(q, 'int main() { return 1; }\n')
    utimesSync(q, before.atime, before.mtime)
    expect(await changedPaths(tree, cache)).toEqual(['README.md', 'src/main.c'])
  })

  it('never enters a directory replaced by a link, and the sync puts it back without writing through it', async () => {
    const chunks = new ChunkMap()
    const { tree, cache } = await freshCopy(chunks)
    await fs.rm(path.join(copy, 'src'), { recursive: true })
    await fs.symlink(sentinel, path.join(copy, 'src'))
    await fs.chmod(path.join(copy, 'bin/build.sh'), 0o644)
    const changed = await changedPaths(tree, cache)
    expect(changed).toEqual(['bin/build.sh', 'src'])
    await materialize(copy, markChanged(tree, changed), tree, chunks.reader)
    expect(await readDisk(copy)).toEqual(DISK)
    expect((await fs.stat(path.join(copy, 'bin/build.sh'))).mode & 0o100).toBe(0o100)
    expect(await readDisk(sentinel)).toEqual({ secret: 'untouched' })
  })

  it('lets the sync put back every kind of change, towards the same tree or a newer one', async () => {
    const chunks = new ChunkMap()
    const { tree, cache } = await freshCopy(chunks)
    await fs.writeFile(path.join(copy, 'README.md'), 'tampered, and longer than before\n')
    await fs.writeFile(path.join(copy, 'planted.sh'), 'rm -rf ~')
    await fs.rm(path.join(copy, 'src/lib/util.c'))
    await fs.symlink(path.join(sentinel, 'secret'), path.join(copy, 'src/lib/util.c'))
    await fs.rm(path.join(copy, 'bin/build.sh'))
    await fs.mkdir(path.join(copy, 'bin/build.sh'))
    const base = markChanged(tree, await changedPaths(tree, cache))
    // the record itself is not modified
    expect((tree.entries.get('README.md') as FileNode).size).toBe(8)
    await materialize(copy, base, tree, chunks.reader)
    expect(await readDisk(copy)).toEqual(DISK)
    expect(await readDisk(sentinel)).toEqual({ secret: 'untouched' })
    expect(await changedPaths(tree)).toEqual([])

    // The submitter meanwhile deleted the tampered file: it still goes.
    await fs.writeFile(path.join(copy, 'README.md'), 'tampered again\n')
    const { 'README.md': _, ...rest } = PROJECT
    const next = buildTree(rest, chunks)
    await materialize(copy, markChanged(tree, await changedPaths(tree)), next, chunks.reader)
    const { 'README.md': __, ...restDisk } = DISK
    expect(await readDisk(copy)).toEqual(restDisk)
  })

  it('strict (after a command): trusts a file only as a stat-cache rescan would, and keeps what it trusted in the cache', async () => {
    const strict = async (tree: DirNode, statCache: StatCache): Promise<string[]> => {
      const check = await checkCopy(copy, tree, { statCache, strict: true })
      if ('unusable' in check) throw new Error(check.unusable)
      return [...check.changed].sort()
    }
    const chunks = new ChunkMap()
    const { tree, cache, written } = await freshCopy(chunks)
    expect(await strict(tree, cache)).toEqual([])

    // A file the cache does not know: the rescan would read it, so it is not vouched for.
    const partial = StatCache.empty(undefined, { racyMarginMs: 0 })
    const readme = tree.entries.get('README.md') as FileNode
    await partial.beginScanWith(copy, [['README.md', readme]])
    expect(await strict(tree, partial)).toEqual(['.vgridignore', 'bin/build.sh', 'src/lib/util.c', 'src/main.c'])
    // (the quick check alone finds nothing there)
    expect(await changedPaths(tree, partial)).toEqual([])

    // Known to the cache with other chunks than the tree says: the rescan's tree would differ.
    const other = buildTree({ ...PROJECT, 'README.md': '# HELLO\n' }, chunks)
    const otherReadme = other.entries.get('README.md') as FileNode
    const misled = StatCache.empty(undefined, { racyMarginMs: 0 })
    const st = await fs.lstat(path.join(copy, 'README.md'), { bigint: true })
    misled.record('README.md', { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino }, otherReadme.chunks)
    expect(await strict(tree, misled)).toContain('README.md')

    // What it trusted is marked seen: a cache saved after it keeps those files, and only them.
    const file = path.join(tmp, 'copy.statcache')
    const saved = StatCache.empty(file, { racyMarginMs: 0 })
    await saved.beginScanWith(copy, written)
    saved.record('gone.txt', { size: 1n, mtimeNs: 1n, ctimeNs: 1n, ino: 1n }, [readme.chunks[0]!])
    saved.beginScan()
    expect(await strict(tree, saved)).toEqual([])
    await saved.save()
    const reloaded = await StatCache.load(file, { racyMarginMs: 0 })
    expect(reloaded.size).toBe(written.length)
    expect(reloaded.peek('gone.txt')).toBeUndefined()
    expect(await strict(tree, reloaded)).toEqual([])
  })

  it('calls a copy that is no directory unusable', async () => {
    const { tree } = await freshCopy()
    await fs.rm(copy, { recursive: true })
    await fs.symlink(sentinel, copy)
    expect(await checkCopy(copy, tree)).toEqual({ unusable: 'the copy is not a directory' })
  })
})

// The stat worker loads compiled JavaScript: this runs against the build `npm test` makes first.
const DIST = path.resolve('dist/src/fs-sync/index.js')
const HAS_DIST = existsSync(DIST) && existsSync(path.resolve('dist/src/fs-sync/stat-worker.js'))

describe('checkCopy with the stat worker', () => {
  it.skipIf(!HAS_DIST)('finds the same changes as the main thread alone (needs `npm run build`)', async () => {
    const dist = await import(DIST) as typeof import('../../src/fs-sync/index.js')
    const { WORKER_MIN_FILES } = await import(path.resolve('dist/src/fs-sync/stat-workers.js')) as typeof import('../../src/fs-sync/stat-workers.js')
    for (let i = 0; i < WORKER_MIN_FILES + 100; i++) {
      const dir = path.join(copy, `d${i % 7}`)
      await fs.mkdir(dir, { recursive: true })
      await fs.writeFile(path.join(dir, `f${i}.txt`), `file ${i}\n`)
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
    const cache = dist.StatCache.empty(undefined, { racyMarginMs: 0 })
    const { tree } = await dist.scanWorkspace(copy, { statCache: cache, workers: 0 })
    const worker = dist.StatWorker.start()!
    try {
      await waitFor(() => worker.available, 'the stat worker to start')
      const both = async (): Promise<string[][]> => await Promise.all([
        dist.checkCopy(copy, tree, { statCache: cache }),
        dist.checkCopy(copy, tree, { statCache: cache, statWorker: worker })
      ].map(async (p) => { const c = await p; if ('unusable' in c) throw new Error(c.unusable); return [...c.changed].sort() }))
      expect(await both()).toEqual([[], []])
      // one in each half of the files, whatever order the directories are read in
      for (const i of [0, 1, 5, 6, WORKER_MIN_FILES + 99]) await fs.appendFile(path.join(copy, `d${i % 7}`, `f${i}.txt`), 'more')
      await fs.rm(path.join(copy, 'd3', 'f3.txt'))
      const [alone, threaded] = await both()
      expect(threaded).toEqual(alone)
      expect(threaded).toHaveLength(6)
    } finally {
      await worker.close()
    }
  })
})
