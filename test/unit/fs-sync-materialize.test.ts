import fs from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { materialize } from '../../src/fs-sync/materialize.js'
import { READ_AHEAD_CHUNKS, TEMP_PREFIX } from '../../src/fs-sync/write-file.js'
import type { ChunkReader, DirNode, FileNode, Node } from '../../src/fs-sync/types.js'
import type { FileWriter } from '../../src/fs-sync/file-writer.js'
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
/** PROJECT as readDisk sees it once written. */
const PROJECT_ON_DISK = {
  'README.md': '# hello\n',
  src: { 'main.c': 'int main() { return 0; }\n', lib: { 'util.c': 'void f() {}\n' } },
  bin: { 'build.sh': '#!/bin/sh\nmake\n' },
  latest: '-> src/main.c',
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
    expect(await readDisk(copy)).toEqual(PROJECT_ON_DISK)
    // the directory was empty: what it made is all it holds (the hand-over needs no walk)
    expect({ ...result, made: result.made?.sort() }).toEqual({
      written: 5, deleted: 0, bytes: 8 + 25 + 12 + 15, fresh: true,
      made: ['README.md', 'bin', 'bin/build.sh', 'empty', 'latest', 'src', 'src/lib', 'src/lib/util.c', 'src/main.c']
    })
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
      src: { ...(PROJECT.src as DirSpec), 'new.c': 'int x;\n', fresh: { 'f.c': 'f\n' } },
      out: link('src/new.c')
    }, chunks)
    // what it created, so that only that need be handed to a guest user
    expect({ ...result, made: result.made?.sort() }).toEqual({ written: 4, deleted: 0, bytes: 14 + 7 + 2, made: ['README.md', 'out', 'src/fresh', 'src/fresh/f.c', 'src/new.c'] })
    const after = await fs.stat(path.join(copy, 'src/lib/util.c'))
    expect(after.ino).toBe(before.ino)
    expect(after.ctimeMs).toBe(before.ctimeMs)
    const readme = await fs.stat(path.join(copy, 'README.md'))
    expect(readme.ino).not.toBe(readmeBefore.ino)
    expect(Math.floor(readme.mtimeMs)).toBe(TEST_MTIME_MS + 5000)
    expect(await fs.readFile(path.join(copy, 'README.md'), 'utf8')).toBe('# hello again\n')
    expect(await fs.readFile(path.join(copy, 'src/new.c'), 'utf8')).toBe('int x;\n')
    // Only the two new files' chunks were asked for.
    expect(chunks.reads).toBe(3)
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
    expect(await readDisk(copy)).toEqual(PROJECT_ON_DISK)
    expect(result.deleted).toBe(5)
    // entries it kept were not its own: it cannot say what is (the hand-over walks it all)
    expect(result.made).toBeUndefined()
    expect(result.fresh).toBeUndefined()
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

describe('materialize: a big file whose chunks kept their lengths', () => {
  const SIZE = 1536 * 1024
  const big = randomBytes(SIZE)
  const edited = (at: number[]): Buffer => {
    const b = Buffer.from(big)
    for (const i of at) b[i] = b[i]! ^ 0xff
    return b
  }
  const ino = async (rel: string): Promise<number> => (await fs.stat(path.join(copy, rel))).ino

  it('is patched where it lies: one chunk written, same inode, the new bytes, mode and mtime', async () => {
    const chunks = new ChunkMap()
    const { tree: base } = await sync(undefined, { 'big.bin': file(big) }, chunks)
    const before = await ino('big.bin')
    const { tree: next, result } = await sync(base, { 'big.bin': file(edited([SIZE / 2]), { exec: true, mtimeMs: TEST_MTIME_MS + 5000 }) }, chunks)
    // patched, not made: it keeps its owner (the guest user the copy was handed to)
    expect(result).toEqual({ written: 1, deleted: 0, bytes: 1024, made: [] })
    expect(await ino('big.bin')).toBe(before)
    expect(Buffer.compare(await fs.readFile(path.join(copy, 'big.bin')), edited([SIZE / 2]))).toBe(0)
    const st = await fs.stat(path.join(copy, 'big.bin'))
    expect(st.mode & 0o777).toBe(0o755)
    expect(Math.floor(st.mtimeMs)).toBe(TEST_MTIME_MS + 5000)
    // and back, from the tree it now holds
    await sync(next, { 'big.bin': file(big) }, chunks)
    expect(Buffer.compare(await fs.readFile(path.join(copy, 'big.bin')), big)).toBe(0)
  })

  it('is rewritten whole when it has another name too, differs from its base, or the edit moved bytes', async () => {
    const chunks = new ChunkMap()
    const { tree: base } = await sync(undefined, { 'big.bin': file(big), 'b2.bin': file(big), 'b3.bin': file(big) }, chunks)
    // a second name: patching would change the other path as well
    await fs.link(path.join(copy, 'b2.bin'), path.join(tmp, 'elsewhere'))
    // not what the base says (another mtime): the base does not describe it
    await fs.utimes(path.join(copy, 'b3.bin'), new Date(), new Date())
    const inos = await Promise.all(['big.bin', 'b2.bin', 'b3.bin'].map(ino))
    const inserted = Buffer.concat([big.subarray(0, 1000), Buffer.from('x'), big.subarray(1000)])
    const { result } = await sync(base, { 'big.bin': file(inserted), 'b2.bin': file(edited([7])), 'b3.bin': file(edited([7])) }, chunks)
    expect(result.written).toBe(3)
    for (const [i, rel] of ['big.bin', 'b2.bin', 'b3.bin'].entries()) expect(await ino(rel)).not.toBe(inos[i])
    expect(Buffer.compare(await fs.readFile(path.join(copy, 'big.bin')), inserted)).toBe(0)
    expect(Buffer.compare(await fs.readFile(path.join(copy, 'b2.bin')), edited([7]))).toBe(0)
    expect(Buffer.compare(await fs.readFile(path.join(tmp, 'elsewhere')), big)).toBe(0)
    expect(Buffer.compare(await fs.readFile(path.join(copy, 'b3.bin')), edited([7]))).toBe(0)
  })

  it('is rewritten whole when much of it changed', async () => {
    const chunks = new ChunkMap()
    const { tree: base } = await sync(undefined, { 'big.bin': file(big) }, chunks)
    const before = await ino('big.bin')
    const many = edited(Array.from({ length: 600 }, (_, i) => i * 1024))
    await sync(base, { 'big.bin': file(many) }, chunks)
    expect(await ino('big.bin')).not.toBe(before)
    expect(Buffer.compare(await fs.readFile(path.join(copy, 'big.bin')), many)).toBe(0)
  })
})

describe('materialize with a writer thread', () => {
  // The thread loads the built worker: the writer comes from dist (tests run after a build).
  let writer: FileWriter
  let handed = 0
  let real: FileWriter
  beforeEach(async () => {
    const built = new URL('../../dist/src/fs-sync/file-writer.js', import.meta.url).href
    const { FileWriter: Built } = await import(built) as { FileWriter: typeof FileWriter }
    real = Built.start()!
    handed = 0
    writer = {
      get available () { return real.available },
      get threads () { return real.threads },
      write: async (f: Parameters<FileWriter['write']>[0]) => { handed++; return await real.write(f) }
    } as unknown as FileWriter
  })
  afterEach(async () => { await real.close() })

  it('writes the small files in the thread, with the same modes, mtimes and links', async () => {
    const chunks = new ChunkMap()
    const tree = buildTree(PROJECT, chunks)
    const result = await materialize(copy, undefined, tree, chunks.reader, { writer })
    expect(await readDisk(copy)).toEqual(PROJECT_ON_DISK)
    expect(handed).toBe(4)
    expect(result).toMatchObject({ written: 5, bytes: 8 + 25 + 12 + 15, fresh: true })
    expect((await fs.stat(path.join(copy, 'bin/build.sh'))).mode & 0o777).toBe(0o755)
    expect((await fs.stat(path.join(copy, 'README.md'))).mode & 0o777).toBe(0o644)
    expect(Math.floor((await fs.stat(path.join(copy, 'README.md'))).mtimeMs)).toBe(TEST_MTIME_MS)
    expect(await tempsUnder(copy)).toEqual([])
  })

  it('writes with several threads the same files as with one', async () => {
    const built = new URL('../../dist/src/fs-sync/file-writer.js', import.meta.url).href
    const { FileWriter: Built } = await import(built) as { FileWriter: typeof FileWriter }
    const two = Built.start(2)!
    try {
      expect(two.threads).toBe(2)
      const spec: Record<string, Record<string, ReturnType<typeof file>>> = {}
      const disk: Record<string, Record<string, string>> = {}
      for (let i = 0; i < 300; i++) {
        const content = `file ${i}\n`.repeat(1 + (i % 3))
        ;(spec[`d${i % 5}`] ??= {})[`f${i}`] = file(content, { exec: i % 7 === 0 })
        ;(disk[`d${i % 5}`] ??= {})[`f${i}`] = content
      }
      const chunks = new ChunkMap()
      const tree = buildTree(spec, chunks)
      const result = await materialize(copy, undefined, tree, chunks.reader, { writer: two })
      expect(result).toMatchObject({ written: 300, fresh: true })
      expect(await readDisk(copy)).toEqual(disk)
      expect(await tempsUnder(copy)).toEqual([])
      expect((await fs.stat(path.join(copy, 'd4/f294'))).mode & 0o777).toBe(0o755)
      expect((await fs.stat(path.join(copy, 'd3/f298'))).mode & 0o777).toBe(0o644)
      expect(Math.floor((await fs.stat(path.join(copy, 'd3/f298'))).mtimeMs)).toBe(TEST_MTIME_MS)
    } finally {
      await two.close()
    }
  })

  it('writes a file of a fresh copy in place, and over what is there after all, never through a link', async () => {
    await fs.mkdir(copy, { recursive: true })
    const outside = path.join(path.dirname(copy), 'outside')
    await fs.writeFile(outside, 'not yours')
    await fs.writeFile(path.join(copy, 'was-file'), 'old')
    await fs.symlink(outside, path.join(copy, 'was-link'))
    const mtimeMs = TEST_MTIME_MS
    for (const [name, data] of [['new', 'fresh'], ['was-file', 'replaced'], ['was-link', 'not through']] as const) {
      const abs = path.join(copy, name)
      expect(await real.write({ dir: copy, abs, data: Buffer.from(data), createMode: 0o600, mode: 0o755, mtimeMs, fresh: true })).toEqual({})
      const st = await fs.lstat(abs)
      expect({ file: st.isFile(), mode: st.mode & 0o777, mtime: Math.floor(st.mtimeMs), data: await fs.readFile(abs, 'utf8') }).toEqual({ file: true, mode: 0o755, mtime: mtimeMs, data })
    }
    expect(await fs.readFile(outside, 'utf8')).toBe('not yours')
    expect(await tempsUnder(copy)).toEqual([])
  })

  it('replaces a directory found where a file goes (the base did not know of it)', async () => {
    const chunks = new ChunkMap()
    const base = buildTree({ f: 'old', g: 'kept' }, chunks)
    await materialize(copy, undefined, base, chunks.reader, { writer })
    await fs.rm(path.join(copy, 'f'))
    await fs.mkdir(path.join(copy, 'f/inner'), { recursive: true })
    await fs.writeFile(path.join(copy, 'f/inner/x'), 'in the way')
    const next = buildTree({ f: 'new', g: 'kept' }, chunks)
    await materialize(copy, base, next, chunks.reader, { writer })
    expect(await readDisk(copy)).toEqual({ f: 'new', g: 'kept' })
    expect(await tempsUnder(copy)).toEqual([])
  })
})
