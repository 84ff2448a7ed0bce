import fs from 'node:fs/promises'
import fsSync from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { applyOutputs, type ApplyOutputsOptions } from '../../src/fs-sync/apply-outputs.js'
import { materialize } from '../../src/fs-sync/materialize.js'
import { scanWorkspace } from '../../src/fs-sync/scan.js'
import { hexOf } from '../../src/fs-sync/hash.js'
import { TEMP_PREFIX } from '../../src/fs-sync/write-file.js'
import type { ChunkReader, ChunkSource, DirNode } from '../../src/fs-sync/types.js'
import { buildTree, ChunkMap, file, link, readDisk, TEST_MTIME_MS, type DirSpec } from '../helpers/fs-sync-trees.js'

const TASK = 't42'
const LATER_MS = TEST_MTIME_MS + 60_000

let tmp: string
let ws: string
let sentinel: string

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vgrid-apply-'))
  ws = path.join(tmp, 'ws')
  sentinel = path.join(tmp, 'sentinel')
  await fs.mkdir(sentinel)
})

afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true })
})

const PROJECT: DirSpec = {
  'README.md': '# hello\n',
  src: { 'main.c': 'int main() { return 0; }\n', 'old.c': 'old\n' },
  tmp: { 'a.o': 'obj', deep: { 'b.o': 'obj' } },
  run: link('src/main.c')
}

/** A workspace on disk as the snapshot saw it (mtimes included), and that snapshot. */
async function workspace (spec: DirSpec): Promise<DirNode> {
  const chunks = new ChunkMap()
  const snapshot = buildTree(spec, chunks)
  await materialize(ws, undefined, snapshot, chunks.reader)
  return snapshot
}

async function apply (snapshot: DirNode, spec: DirSpec | DirNode, opts: Partial<ApplyOutputsOptions> = {}): Promise<Awaited<ReturnType<typeof applyOutputs>>> {
  const chunks = new ChunkMap()
  const result = 'kind' in spec && spec.kind === 'dir' ? spec as DirNode : buildTree(spec as DirSpec, chunks)
  return await applyOutputs(ws, snapshot, result, chunks.reader, { taskId: TASK, ...opts })
}

async function tempsUnder (dir: string): Promise<string[]> {
  const all = await fs.readdir(dir, { recursive: true })
  return all.filter((p) => path.basename(p).startsWith(TEMP_PREFIX))
}

describe('applyOutputs', () => {
  it('applies new, modified and deleted paths with their mode and mtime', async () => {
    const snapshot = await workspace(PROJECT)
    // A private file stays private when the command rewrites it (chmod leaves mtime alone).
    await fs.chmod(path.join(ws, 'src/main.c'), 0o600)
    const out = await apply(snapshot, {
      'README.md': '# hello\n',
      src: { 'main.c': file('int main() { return 1; }\n', { mtimeMs: LATER_MS }), 'new.c': 'new\n' },
      build: { app: file('\x7fELF', { exec: true, mtimeMs: LATER_MS }) },
      run: link('build/app')
    })
    expect(await readDisk(ws)).toEqual({
      'README.md': '# hello\n',
      src: { 'main.c': 'int main() { return 1; }\n', 'new.c': 'new\n' },
      build: { app: '\x7fELF' },
      run: '-> build/app'
    })
    expect(out).toEqual({
      written: ['build/app', 'run', 'src/main.c', 'src/new.c'],
      deleted: ['src/old.c', 'tmp', 'tmp/a.o', 'tmp/deep', 'tmp/deep/b.o'],
      conflicts: [],
      refused: []
    })
    const app = await fs.stat(path.join(ws, 'build/app'))
    expect(app.mode & 0o100).toBe(0o100)
    expect(Math.floor(app.mtimeMs)).toBe(LATER_MS)
    expect((await fs.stat(path.join(ws, 'src/main.c'))).mode & 0o777).toBe(0o600)
    expect(await tempsUnder(ws)).toEqual([])
  })

  it('keeps a file the user changed meanwhile and writes the incoming one beside it', async () => {
    const snapshot = await workspace(PROJECT)
    await fs.writeFile(path.join(ws, 'src/main.c'), 'my edit\n')
    const told: Array<[string, string | undefined]> = []
    const out = await apply(snapshot, {
      ...PROJECT,
      src: { 'main.c': file('from the command\n', { mtimeMs: LATER_MS }), 'old.c': 'old\n' }
    }, { onConflict: (p, c) => told.push([p, c]) })
    expect(await fs.readFile(path.join(ws, 'src/main.c'), 'utf8')).toBe('my edit\n')
    expect(await fs.readFile(path.join(ws, `src/main.c.vgrid-conflict-${TASK}`), 'utf8')).toBe('from the command\n')
    expect(out.conflicts).toEqual([{ path: 'src/main.c', conflictPath: `src/main.c.vgrid-conflict-${TASK}` }])
    expect(out.written).toEqual([])
    expect(told).toEqual([['src/main.c', `src/main.c.vgrid-conflict-${TASK}`]])
  })

  it('keeps deleted a file the user deleted meanwhile, and says it was deleted, not changed', async () => {
    const snapshot = await workspace(PROJECT)
    await fs.rm(path.join(ws, 'src/main.c'))
    const told: Array<[string, string | undefined, boolean]> = []
    const out = await apply(snapshot, {
      ...PROJECT,
      src: { 'main.c': file('from the command\n', { mtimeMs: LATER_MS }), 'old.c': 'old\n' }
    }, { onConflict: (p, c, deletedHere) => told.push([p, c, deletedHere]) })
    await expect(fs.lstat(path.join(ws, 'src/main.c'))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(await fs.readFile(path.join(ws, `src/main.c.vgrid-conflict-${TASK}`), 'utf8')).toBe('from the command\n')
    expect(out.conflicts).toEqual([{ path: 'src/main.c', conflictPath: `src/main.c.vgrid-conflict-${TASK}`, deletedHere: true }])
    expect(told).toEqual([['src/main.c', `src/main.c.vgrid-conflict-${TASK}`, true]])
  })

  it('does not delete a file the user changed, nor overwrite one the user created', async () => {
    const snapshot = await workspace(PROJECT)
    await fs.writeFile(path.join(ws, 'src/old.c'), 'still needed\n')
    await fs.writeFile(path.join(ws, 'notes.txt'), 'mine\n')
    const out = await apply(snapshot, { ...PROJECT, src: { 'main.c': 'int main() { return 0; }\n' }, 'notes.txt': 'theirs\n' })
    expect(await fs.readFile(path.join(ws, 'src/old.c'), 'utf8')).toBe('still needed\n')
    expect(await fs.readFile(path.join(ws, 'notes.txt'), 'utf8')).toBe('mine\n')
    expect(await fs.readFile(path.join(ws, `notes.txt.vgrid-conflict-${TASK}`), 'utf8')).toBe('theirs\n')
    expect(out.conflicts).toEqual([
      { path: 'notes.txt', conflictPath: `notes.txt.vgrid-conflict-${TASK}` },
      { path: 'src/old.c' }
    ])
  })

  it('sees a same-size edit within the mtime tick of the scan when told when the scan started', async () => {
    const sameSizeSameMtime = async (): Promise<DirNode> => {
      await fs.rm(ws, { recursive: true, force: true })
      const snapshot = await workspace({ 'f.txt': file('aaaa', { mtimeMs: Date.now() }) })
      const st = await fs.stat(path.join(ws, 'f.txt'))
      await fs.writeFile(path.join(ws, 'f.txt'), 'bbbb')
      await fs.utimes(path.join(ws, 'f.txt'), st.atimeMs / 1000, st.mtimeMs / 1000)
      return snapshot
    }
    const result: DirSpec = { 'f.txt': file('cccc', { mtimeMs: LATER_MS }) }
    const racy = await apply(await sameSizeSameMtime(), result, { snapshotStartedMs: Date.now() - 100 })
    expect(await fs.readFile(path.join(ws, 'f.txt'), 'utf8')).toBe('bbbb')
    expect(racy.conflicts).toEqual([{ path: 'f.txt', conflictPath: `f.txt.vgrid-conflict-${TASK}` }])
    // Without the scan's start, size + mtime is all that is looked at (rsync's quick check).
    const quick = await apply(await sameSizeSameMtime(), result)
    expect(await fs.readFile(path.join(ws, 'f.txt'), 'utf8')).toBe('cccc')
    expect(quick.conflicts).toEqual([])
  })

  it('writes an incoming directory beside a file the user put in its place', async () => {
    const snapshot = await workspace({ 'a.txt': 'a' })
    await fs.writeFile(path.join(ws, 'gen'), 'my file')
    const out = await apply(snapshot, { 'a.txt': 'a', gen: { 'x.h': 'x', sub: { 'y.h': 'y' } } })
    expect(await readDisk(ws)).toEqual({
      'a.txt': 'a',
      gen: 'my file',
      [`gen.vgrid-conflict-${TASK}`]: { 'x.h': 'x', sub: { 'y.h': 'y' } }
    })
    expect(out.conflicts).toEqual([{ path: 'gen', conflictPath: `gen.vgrid-conflict-${TASK}` }])
  })

  it('never writes nor deletes ignored paths, and keeps a directory that still holds some', async () => {
    const snapshot = await workspace(PROJECT)
    await fs.writeFile(path.join(ws, 'tmp/deep/local.env'), 'SECRET=1')
    const isIgnored = (rel: string, isDir: boolean): boolean => rel === 'node_modules' || rel.endsWith('.env') || (isDir && rel === 'src')
    const out = await apply(snapshot, {
      'README.md': '# hello\n',
      node_modules: { pkg: { 'index.js': 'x' } },
      'creds.env': 'LEAK=1',
      run: link('src/main.c')
    }, { isIgnored })
    expect(await readDisk(ws)).toEqual({
      'README.md': '# hello\n',
      src: { 'main.c': 'int main() { return 0; }\n', 'old.c': 'old\n' },
      tmp: { deep: { 'local.env': 'SECRET=1' } },
      run: '-> src/main.c'
    })
    expect(out.deleted).toEqual(['tmp/a.o', 'tmp/deep/b.o'])
    expect(out.written).toEqual([])
  })

  it('is idempotent: applying the same result again changes nothing and reports no conflict', async () => {
    const snapshot = await workspace(PROJECT)
    const result: DirSpec = { ...PROJECT, src: { 'main.c': file('v2\n', { mtimeMs: LATER_MS }) }, out: { 'r.txt': 'r' } }
    const first = await apply(snapshot, result)
    expect(first.written).toEqual(['out/r.txt', 'src/main.c'])
    const again = await apply(snapshot, result)
    expect(again).toEqual({ written: [], deleted: [], conflicts: [], refused: [] })
  })

  it('removes what only goes away after writing the files, so a renamed file can still be read', async () => {
    const snapshot = await workspace({ 'old.bin': 'the content', sub: { 'a.txt': 'a' }, gone: { 'x.txt': 'x' }, f: 'a file' })
    const chunks = new ChunkMap()
    const result = buildTree({ 'new.bin': 'the content', sub: { 'b.txt': 'a' }, f: { inside: 'now a directory' } }, chunks)
    const seen: string[] = []
    const reader: ChunkReader = async (ref) => {
      // what the command renamed is still here when its new name is written
      seen.push([fsSync.existsSync(path.join(ws, 'old.bin')), fsSync.existsSync(path.join(ws, 'sub/a.txt'))].join(','))
      return await chunks.reader(ref)
    }
    const out = await applyOutputs(ws, snapshot, result, reader, { taskId: TASK })
    expect(seen.length).toBeGreaterThan(0)
    expect(new Set(seen)).toEqual(new Set(['true,true']))
    expect(out.deleted).toEqual(['f', 'gone', 'gone/x.txt', 'old.bin', 'sub/a.txt'])
    expect(await readDisk(ws)).toEqual({ 'new.bin': 'the content', sub: { 'b.txt': 'a' }, f: { inside: 'now a directory' } })
  })

  it('writes a file the command rewrote keeping its size, mtime and mode: only the bytes differ', async () => {
    const snapshot = await workspace({ 'state.txt': 'aaaa', 'other.txt': 'kept' })
    // buildTree gives both the same mtime (TEST_MTIME_MS) and mode as the snapshot's
    const out = await apply(snapshot, { 'state.txt': 'bbbb', 'other.txt': 'kept' })
    expect(out).toEqual({ written: ['state.txt'], deleted: [], conflicts: [], refused: [] })
    expect(await readDisk(ws)).toEqual({ 'state.txt': 'bbbb', 'other.txt': 'kept' })
    expect((await apply(snapshot, { 'state.txt': 'bbbb', 'other.txt': 'kept' })).written).toEqual([])
  })

  it.each([
    ['..', { x: 'pwned' }],
    ['a/b', 'pwned'],
    ['/etc', { passwd: 'pwned' }],
    ['', 'pwned']
  ])('throws on the hostile name %j before writing anything', async (name, what) => {
    const snapshot = await workspace({ 'a.txt': 'a' })
    const chunks = new ChunkMap()
    const result = buildTree({ 'a.txt': 'a', 'fresh.txt': 'written first?' }, chunks)
    const hostile = buildTree({ x: what } as DirSpec, chunks).entries.get('x')!
    result.entries.set(name, hostile)
    await expect(applyOutputs(ws, snapshot, result, chunks.reader, { taskId: TASK })).rejects.toMatchObject({ code: 'ERR_UNSAFE_PATH' })
    expect(await readDisk(ws)).toEqual({ 'a.txt': 'a' })
    expect(await fs.readdir(sentinel)).toEqual([])
  })

  it('refuses writes through a symlink the user made, and links that leave the workspace', async () => {
    const snapshot = await workspace({ out: { 'a.txt': 'a' }, keep: 'k' })
    // While the command ran, the user moved out/ elsewhere and left a link.
    await fs.rm(path.join(ws, 'out'), { recursive: true })
    await fs.symlink(sentinel, path.join(ws, 'out'))
    const out = await apply(snapshot, {
      out: { 'a.txt': file('changed', { mtimeMs: LATER_MS }), 'b.txt': 'new' },
      keep: 'k',
      abs: link(sentinel),
      up: link('../sentinel'),
      ok: link('keep')
    })
    expect(await fs.readdir(sentinel)).toEqual([])
    expect(out.written).toEqual(['ok'])
    expect(out.refused.map((r) => r.path)).toEqual(['abs', 'out/a.txt', 'out/b.txt', 'up'])
    expect(await fs.readlink(path.join(ws, 'out'))).toBe(sentinel)
    expect(await readDisk(ws)).toMatchObject({ keep: 'k', ok: '-> keep' })
    await expect(fs.lstat(path.join(ws, 'abs'))).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('leaves the user\'s file or directory as it was when the command replaced it by a link out of the workspace', async () => {
    // issue 15 §6: the link was refused on the way back, but data.txt had been deleted first
    const snapshot = await workspace({ 'data.txt': 'precious', results: { 'r.csv': '1,2' }, other: 'o' })
    const out = await apply(snapshot, {
      'data.txt': link('/etc/passwd'),
      results: link('../sentinel'),
      other: file('changed', { mtimeMs: LATER_MS })
    })
    expect(out.refused.map((r) => r.path)).toEqual(['data.txt', 'results'])
    expect(out.refused[0]!.reason).toMatch(/leaves the workspace; yours was left as it was/)
    expect(out.deleted).toEqual([])
    expect(await readDisk(ws)).toMatchObject({ 'data.txt': 'precious', results: { 'r.csv': '1,2' }, other: 'changed' })
    expect(await fs.readdir(sentinel)).toEqual([])
  })

  it('refuses a task id that does not fit in a file name', async () => {
    const snapshot = await workspace({ 'a.txt': 'a' })
    await expect(apply(snapshot, { 'a.txt': 'b' }, { taskId: '../x' })).rejects.toMatchObject({ code: 'ERR_BAD_ARGUMENT' })
  })
})

describe('applyOutputs, when the workspace moved on', () => {
  it('does not make again a directory the user removed meanwhile', async () => {
    const snapshot = await workspace({ lib: { 'a.c': 'a' }, keep: 'k' })
    await fs.rm(path.join(ws, 'lib'), { recursive: true })
    const out = await apply(snapshot, { lib: { 'a.c': 'a', 'b.c': 'b', gen: { 'c.h': 'c' } }, keep: 'k' })
    expect(await readDisk(ws)).toEqual({ keep: 'k' })
    expect(out.refused.map((r) => r.path)).toEqual(['lib/b.c', 'lib/gen', 'lib/gen/c.h'])
    expect(out.refused[0]!.reason).toMatch(/removed here meanwhile/)
  })

  it('stops when a chunk cannot be read, whatever error it is', async () => {
    const snapshot = await workspace({ 'a.txt': 'a' })
    const chunks = new ChunkMap()
    const result = buildTree({ 'a.txt': 'a', 'b.txt': 'b' }, chunks)
    const failing = async (): Promise<Uint8Array> => { throw Object.assign(new Error('source vanished'), { code: 'ENOENT' }) }
    await expect(applyOutputs(ws, snapshot, result, failing, { taskId: TASK })).rejects.toThrow('source vanished')
    expect(await readDisk(ws)).toEqual({ 'a.txt': 'a' })
  })
})

/** Reads chunks where a scan found them. */
function sourceReader (sources: Map<string, ChunkSource>): ChunkReader {
  return async (ref) => {
    const src = sources.get(hexOf(ref.hash))
    if (src === undefined) throw new Error('no source for a chunk')
    const fh = await fs.open(src.path, 'r')
    try {
      const buf = Buffer.alloc(src.size)
      await fh.read(buf, 0, src.size, src.offset)
      return buf
    } finally {
      await fh.close()
    }
  }
}

describe('a round trip with the real scanner', () => {
  it('copy, run, bring back: no false conflict, and the workspace ends as the copy', async () => {
    // A workspace written the ordinary way, with sub-millisecond mtimes.
    await fs.mkdir(path.join(ws, 'src'), { recursive: true })
    await fs.writeFile(path.join(ws, 'src/main.c'), 'int main() { return 0; }\n')
    await fs.writeFile(path.join(ws, 'src/gone.c'), 'bye\n')
    await fs.writeFile(path.join(ws, 'build.sh'), '#!/bin/sh\n', { mode: 0o755 })
    await fs.writeFile(path.join(ws, 'big.bin'), Buffer.alloc(700 * 1024, 3))
    await fs.symlink('src/main.c', path.join(ws, 'main'))
    const snap = await scanWorkspace(ws)

    const copy = path.join(tmp, 'copy')
    await materialize(copy, undefined, snap.tree, sourceReader(snap.sources))
    expect(hexOf((await scanWorkspace(copy)).rootHash)).toBe(hexOf(snap.rootHash))

    // The command.
    await fs.writeFile(path.join(copy, 'src/main.c'), 'int main() { return 2; }\n')
    await fs.rm(path.join(copy, 'src/gone.c'))
    await fs.mkdir(path.join(copy, 'out'))
    await fs.writeFile(path.join(copy, 'out/app'), 'binary', { mode: 0o755 })
    const res = await scanWorkspace(copy)

    const out = await applyOutputs(ws, snap.tree, res.tree, sourceReader(res.sources), { taskId: TASK })
    expect(out).toEqual({ written: ['out/app', 'src/main.c'], deleted: ['src/gone.c'], conflicts: [], refused: [] })
    expect(hexOf((await scanWorkspace(ws)).rootHash)).toBe(hexOf(res.rootHash))
  })
})
