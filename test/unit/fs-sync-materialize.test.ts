import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { materialize } from '../../src/fs-sync/materialize.js'
import { READ_AHEAD_CHUNKS, TEMP_PREFIX } from '../../src/fs-sync/write-file.js'
import type { ChunkReader, DirNode, FileNode, Node } from '../../src/fs-sync/types.js'
import { buildTree, ChunkMap, file, link, readDisk, TEST_MTIME_MS, type DirSpec } from '../helpers/fs-sync-trees.js'

let tmp: string
let copy: string
let sentinel: string

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vgrid-materialize-'))
  copy = path.join(tmp, 'copy')
  sentinel = path.join(tmp, 'sentinel')
  await fs.mkdir(sentinel)
})

afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true })
})

const PROJECT: DirSpec = {
  'README.md': '# hello\n',
  src: { 'main.c': 'int main() { return 0; }\n', lib: { 'util.c': 'void f() {}\n' } },
  bin: { 'build.sh': file('#!/bin/sh\nmake\n', { exec: true }) },
  latest: link('src/main.c'),
  empty: {}
}

async function sync (base: DirNode | undefined, spec: DirSpec, chunks = new ChunkMap()): Promise<{ tree: DirNode, result: Awaited<ReturnType<typeof materialize>> }> {
  const tree = buildTree(spec, chunks)
  const result = await materialize(copy, base, tree, chunks.reader)
  return { tree, result }
}

async function tempsUnder (dir: string): Promise<string[]> {
  const all = await fs.readdir(dir, { recursive: true })
  return all.filter((p) => path.basename(p).startsWith(TEMP_PREFIX))
}

describe('materialize', () => {
  it('writes a new copy: files, directories, symlinks, exec bits and mtimes', async () => {
    const { result } = await sync(undefined, PROJECT)
    expect(await readDisk(copy)).toEqual({
      'README.md': '# hello\n',
      src: { 'main.c': 'int main() { return 0; }\n', lib: { 'util.c': 'void f() {}\n' } },
      bin: { 'build.sh': '#!/bin/sh\nmake\n' },
      latest: '-> src/main.c',
      empty: {}
    })
    expect(result).toEqual({ written: 5, deleted: 0, bytes: 8 + 25 + 12 + 15 })
    const sh = await fs.stat(path.join(copy, 'bin/build.sh'))
    const md = await fs.stat(path.join(copy, 'README.md'))
    expect(sh.mode & 0o777).toBe(0o755)
    expect(md.mode & 0o777).toBe(0o644)
    expect(Math.floor(md.mtimeMs)).toBe(TEST_MTIME_MS)
    expect(Math.floor(sh.mtimeMs)).toBe(TEST_MTIME_MS)
    expect(await tempsUnder(copy)).toEqual([])
  })

  it('rewrites only what changed; untouched files keep inode and ctime', async () => {
    const { tree: base } = await sync(undefined, PROJECT)
    const before = await fs.stat(path.join(copy, 'src/lib/util.c'))
    const readmeBefore = await fs.stat(path.join(copy, 'README.md'))
    const chunks = new ChunkMap()
    const { result } = await sync(base, {
      ...PROJECT,
      'README.md': file('# hello again\n', { mtimeMs: TEST_MTIME_MS + 5000 }),
      src: { ...(PROJECT.src as DirSpec), 'new.c': 'int x;\n' }
    }, chunks)
    expect(result).toEqual({ written: 2, deleted: 0, bytes: 14 + 7 })
    const after = await fs.stat(path.join(copy, 'src/lib/util.c'))
    expect(after.ino).toBe(before.ino)
    expect(after.ctimeMs).toBe(before.ctimeMs)
    const readme = await fs.stat(path.join(copy, 'README.md'))
    expect(readme.ino).not.toBe(readmeBefore.ino)
    expect(Math.floor(readme.mtimeMs)).toBe(TEST_MTIME_MS + 5000)
    expect(await fs.readFile(path.join(copy, 'README.md'), 'utf8')).toBe('# hello again\n')
    expect(await fs.readFile(path.join(copy, 'src/new.c'), 'utf8')).toBe('int x;\n')
    // Only the two new files' chunks were asked for.
    expect(chunks.reads).toBe(2)
  })

  it('deletes files, links and whole directories, and changes kinds', async () => {
    const { tree: base } = await sync(undefined, { ...PROJECT, swap: 'was a file', twist: { inner: 'x' } })
    const { result } = await sync(base, {
      'README.md': '# hello\n',
      bin: { 'build.sh': file('#!/bin/sh\nmake\n', { exec: true }) },
      swap: { now: 'a dir' },
      twist: 'now a file',
      latest: { real: 'dir' }
    })
    expect(await readDisk(copy)).toEqual({
      'README.md': '# hello\n',
      bin: { 'build.sh': '#!/bin/sh\nmake\n' },
      swap: { now: 'a dir' },
      twist: 'now a file',
      latest: { real: 'dir' }
    })
    // src, src/main.c, src/lib, src/lib/util.c, empty and twist/inner went; a path that
    // changes kind is a write, not a deletion.
    expect(result.deleted).toBe(6)
    expect(result.written).toBe(3)
  })

  it('streams a many-chunk file with bounded reads ahead and reports progress', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024)
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251
    const chunks = new ChunkMap()
    const tree = buildTree({ big: file(big), small: 'x' }, chunks)
    let inFlight = 0
    let maxInFlight = 0
    const reader: ChunkReader = async (ref) => {
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      await new Promise((resolve) => setImmediate(resolve))
      inFlight--
      return await chunks.reader(ref)
    }
    const seen: Array<{ files: number, bytes: number }> = []
    const result = await materialize(copy, undefined, tree, reader, { concurrency: 1, onProgress: (p) => seen.push(p) })
    expect(Buffer.compare(await fs.readFile(path.join(copy, 'big')), big)).toBe(0)
    expect(result.bytes).toBe(big.length + 1)
    expect(seen.at(-1)).toEqual({ files: 2, bytes: big.length + 1 })
    expect(maxInFlight).toBeGreaterThan(1)
    expect((tree.entries.get('big') as FileNode).chunks.length).toBeGreaterThan(READ_AHEAD_CHUNKS + 1)
    expect(maxInFlight).toBeLessThanOrEqual(READ_AHEAD_CHUNKS + 1)
  })

  it('keeps an escaping symlink as a link and never follows it', async () => {
    const { tree: base } = await sync(undefined, { out: link(sentinel), up: link('../../sentinel') })
    expect((await fs.lstat(path.join(copy, 'out'))).isSymbolicLink()).toBe(true)
    expect(await fs.readlink(path.join(copy, 'out'))).toBe(sentinel)
    // A base that lies (says `out` was a directory) must not get a write through the link.
    const lying: DirNode = { ...base, entries: new Map<string, Node>([...base.entries, ['out', buildTree({})]]) }
    const err = await sync(lying, { out: { passwd: 'pwned' }, up: link('../../sentinel') }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_UNSAFE_PATH' })
    expect(await fs.readdir(sentinel)).toEqual([])
  })

  it('refuses a tree that hides a path under its own link, before writing anything', async () => {
    const chunks = new ChunkMap()
    const tree = buildTree({ a: link(sentinel), ok: 'fine' }, chunks)
    tree.entries.set('a/passwd', buildTree({ x: 'pwned' }, chunks).entries.get('x')!)
    const err = await materialize(copy, undefined, tree, chunks.reader).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_UNSAFE_PATH' })
    expect(await fs.readdir(sentinel)).toEqual([])
    expect(await fs.readdir(copy).catch(() => [])).toEqual([])
  })

  it.each(['..', '.', '', 'a\0b'])('refuses the name %j', async (name) => {
    const chunks = new ChunkMap()
    const tree = buildTree({}, chunks)
    tree.entries.set(name, buildTree({ x: 'pwned' }, chunks))
    await expect(materialize(copy, undefined, tree, chunks.reader)).rejects.toMatchObject({ code: 'ERR_UNSAFE_PATH' })
    expect(await fs.readdir(sentinel)).toEqual([])
  })

  it('replaces a link planted at a file path instead of writing through it', async () => {
    const { tree: base } = await sync(undefined, { victim: 'v1' })
    await fs.rm(path.join(copy, 'victim'))
    await fs.symlink(path.join(sentinel, 'victim'), path.join(copy, 'victim'))
    await sync(base, { victim: 'v2' })
    expect(await readDisk(copy)).toEqual({ victim: 'v2' })
    expect(await fs.readdir(sentinel)).toEqual([])
  })

  it('cleans a stale copy when there is no base', async () => {
    await fs.mkdir(path.join(copy, 'old/deep'), { recursive: true })
    await fs.writeFile(path.join(copy, 'old/deep/f'), 'stale')
    await fs.writeFile(path.join(copy, `${TEMP_PREFIX}0123456789abcdef`), 'half-written')
    await fs.mkdir(path.join(copy, 'src'))
    await fs.writeFile(path.join(copy, 'src/leftover.o'), 'stale')
    await fs.writeFile(path.join(copy, 'src/main.c'), 'stale content')
    await fs.symlink(sentinel, path.join(copy, 'bin'))
    await fs.mkdir(path.join(copy, 'README.md'))
    const { result } = await sync(undefined, PROJECT)
    expect(await readDisk(copy)).toEqual({
      'README.md': '# hello\n',
      src: { 'main.c': 'int main() { return 0; }\n', lib: { 'util.c': 'void f() {}\n' } },
      bin: { 'build.sh': '#!/bin/sh\nmake\n' },
      latest: '-> src/main.c',
      empty: {}
    })
    expect(result.deleted).toBe(5)
    expect(await fs.readdir(sentinel)).toEqual([])
  })

  it('leaves no temp and the old file intact when a chunk is bad or the signal fires', async () => {
    const { tree: base } = await sync(undefined, { f: 'old' })
    const chunks = new ChunkMap()
    const next = buildTree({ f: 'new content' }, chunks)
    const short: ChunkReader = async () => Buffer.from('x')
    await expect(materialize(copy, base, next, short)).rejects.toMatchObject({ code: 'ERR_CHUNK_HASH_MISMATCH' })
    const ac = new AbortController()
    const stalled: ChunkReader = async (ref) => { ac.abort(); return await chunks.reader(ref) }
    await expect(materialize(copy, base, next, stalled, { signal: ac.signal })).rejects.toThrow()
    expect(await readDisk(copy)).toEqual({ f: 'old' })
  })
})
