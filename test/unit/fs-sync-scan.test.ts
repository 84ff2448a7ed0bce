import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { chunkFile } from '../../src/fs-sync/fastcdc.js'
import { scanWorkspace, floorMs, type ChunkFn, type ScanOptions } from '../../src/fs-sync/scan.js'
import { StatCache, statCachePath } from '../../src/fs-sync/stat-cache.js'
import { EncodeMemo, decodeTree, hexOf } from '../../src/fs-sync/tree-codec.js'
import type { DirNode, FileNode, LinkNode } from '../../src/fs-sync/types.js'

let tmp: string
let root: string

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vgrid-scan-'))
  root = path.join(tmp, 'ws')
  await fs.mkdir(root)
})

afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true })
})

async function write (rel: string, content: string | Uint8Array = 'x', mode?: number): Promise<void> {
  const p = path.join(root, rel)
  await fs.mkdir(path.dirname(p), { recursive: true })
  await fs.writeFile(p, content)
  if (mode !== undefined) await fs.chmod(p, mode)
}

/** A chunker that counts the files it reads. */
function counting (): { fn: ChunkFn, files: string[] } {
  const files: string[] = []
  return { files, fn: async (p, _size, signal) => { files.push(path.relative(root, p)); return await chunkFile(p, undefined, signal !== undefined ? { signal } : {}) } }
}

const at = (tree: DirNode, rel: string): unknown => rel.split('/').reduce<unknown>((n, part) => (n as DirNode).entries.get(part), tree)
const sha = (b: string | Uint8Array): string => createHash('sha256').update(b).digest('hex')
/** Trust files written a moment ago (the default margin rightly distrusts them). */
const TRUST_NOW = { racyMarginMs: -60_000 }

describe('scanWorkspace', () => {
  it('records files, exec bits, mtimes, symlinks and empty directories', async () => {
    await write('plain.txt', 'hello', 0o644)
    await write('run.sh', '#!/bin/sh\n', 0o755)
    await write('owner-x', 'x', 0o700)
    await write('group-x-only', 'x', 0o654)
    await write('empty-file', '')
    await write('src/deep/file.c', 'int x;')
    await fs.mkdir(path.join(root, 'empty/nested'), { recursive: true })
    await fs.symlink('plain.txt', path.join(root, 'link-in'))
    await fs.symlink('../../outside/secret', path.join(root, 'src/link-out'))
    await fs.symlink('/etc/passwd', path.join(root, 'link-abs'))
    await fs.symlink('missing', path.join(root, 'link-dangling'))
    await fs.symlink('src', path.join(root, 'link-dir'))
    await fs.utimes(path.join(root, 'plain.txt'), 1_700_000_000.9876, 1_700_000_000.9876)

    const warnings: string[] = []
    const scan = await scanWorkspace(root, { onWarning: (m) => warnings.push(m) })
    expect(warnings).toEqual([])
    const t = scan.tree
    expect([...t.entries.keys()].sort()).toEqual([
      'empty', 'empty-file', 'group-x-only', 'link-abs', 'link-dangling', 'link-dir', 'link-in', 'owner-x', 'plain.txt', 'run.sh', 'src'
    ])
    const plain = at(t, 'plain.txt') as FileNode
    expect(plain).toMatchObject({ kind: 'file', size: 5, exec: false, mtimeMs: 1_700_000_000_987 })
    expect(plain.chunks.map((c) => hexOf(c.hash))).toEqual([sha('hello')])
    expect(at(t, 'run.sh')).toMatchObject({ exec: true })
    expect(at(t, 'owner-x')).toMatchObject({ exec: true })
    expect(at(t, 'group-x-only')).toMatchObject({ exec: false })
    expect(at(t, 'empty-file')).toMatchObject({ size: 0, chunks: [] })
    expect(at(t, 'src/deep/file.c')).toMatchObject({ size: 6 })
    expect(at(t, 'empty/nested')).toMatchObject({ kind: 'dir', entries: new Map() })
    expect(at(t, 'link-in')).toEqual({ kind: 'link', target: 'plain.txt' } satisfies LinkNode)
    expect(at(t, 'src/link-out')).toEqual({ kind: 'link', target: '../../outside/secret' })
    expect(at(t, 'link-abs')).toEqual({ kind: 'link', target: '/etc/passwd' })
    expect(at(t, 'link-dir')).toEqual({ kind: 'link', target: 'src' }) // not followed
    expect(scan.stats).toEqual({ files: 6, dirs: 5, links: 5, bytes: 5 + 10 + 1 + 1 + 0 + 6, chunks: 5 })
  })

  it('skips fifos and names other systems cannot write, one warning each', async () => {
    await write('ok.txt')
    await write('back\\slash')
    execFileSync('mkfifo', [path.join(root, 'pipe')])
    const warnings: string[] = []
    const scan = await scanWorkspace(root, { onWarning: (m) => warnings.push(m) })
    expect([...scan.tree.entries.keys()]).toEqual(['ok.txt'])
    expect(warnings).toHaveLength(2)
    expect(warnings.find((w) => w.includes('"pipe"'))).toMatch(/a fifo cannot be synced/)
    expect(warnings.find((w) => w.includes('back'))).toMatch(/separator/)
  })

  it('encodes the tree: equal scans give equal root hashes, the blobs decode to the same tree', async () => {
    await write('a/b/c.txt', 'c')
    await write('d.txt', randomBytes(600_000))
    const one = await scanWorkspace(root)
    const two = await scanWorkspace(root)
    expect(hexOf(one.rootHash)).toBe(hexOf(two.rootHash))
    expect(hexOf(one.tree.hash)).toBe(hexOf(one.rootHash))
    const { tree, stats } = await decodeTree(one.rootHash, async (h) => one.blobs.get(hexOf(h))!)
    expect(stats).toEqual(one.stats)
    expect((at(tree, 'd.txt') as FileNode).chunks).toHaveLength((at(one.tree, 'd.txt') as FileNode).chunks.length)
  })

  it('reuses the last scan\'s unchanged directory records, and never hides a change', async () => {
    await write('a/b/c.txt', 'c')
    await write('a/x.sh', '#!/bin/sh\n', 0o644)
    await write('big/d.bin', randomBytes(20 * 2 ** 20))
    await write('e/f.txt', 'f')
    await fs.symlink('f.txt', path.join(root, 'e/link'))
    const memo = new EncodeMemo()
    const cache = StatCache.empty(undefined, TRUST_NOW)
    const scan = async (): Promise<Awaited<ReturnType<typeof scanWorkspace>>> => await scanWorkspace(root, { statCache: cache, memo })
    const fresh = async (): Promise<string> => hexOf((await scanWorkspace(root)).rootHash)
    const blobsOf = (s: { blobs: Map<string, Uint8Array> }): string[] => [...s.blobs.keys()].sort()
    const one = await scan()
    expect(memo.reused).toBe(0)
    const two = await scan()
    expect(memo.reused).toBe(5) // root, a, a/b, big and e
    expect(hexOf(two.rootHash)).toBe(hexOf(one.rootHash))
    expect(blobsOf(two)).toEqual(blobsOf(one))

    // Each change gives the root hash and blobs of a fresh scan.
    const changes: Array<() => Promise<void>> = [
      async () => { await write('a/b/c.txt', 'C') },
      async () => { await fs.chmod(path.join(root, 'a/x.sh'), 0o755) },
      async () => { await fs.utimes(path.join(root, 'e/f.txt'), new Date(), new Date(Date.now() - 60_000)) },
      async () => { await fs.rm(path.join(root, 'e/link')); await fs.symlink('elsewhere', path.join(root, 'e/link')) },
      async () => { const fd = await fs.open(path.join(root, 'big/d.bin'), 'r+'); await fd.write(Buffer.from('!'), 0, 1, 10 * 2 ** 20); await fd.close() },
      async () => { await fs.rm(path.join(root, 'a/b/c.txt')) },
      async () => { await write('a/b/new.txt', 'new') }
    ]
    for (const change of changes) {
      const before = await scan()
      await change()
      const after = await scan()
      expect(hexOf(after.rootHash)).not.toBe(hexOf(before.rootHash))
      expect(hexOf(after.rootHash)).toBe(await fresh())
      expect(blobsOf(after)).toEqual(blobsOf(await scanWorkspace(root)))
      const { tree } = await decodeTree(after.rootHash, async (h) => after.blobs.get(hexOf(h))!)
      expect(tree.entries.size).toBe(after.tree.entries.size)
    }
  })

  it('gives every chunk a source: the file and the offset of its bytes', async () => {
    const big = randomBytes(1_000_000)
    await write('big.bin', big)
    await write('copy.bin', big)
    const scan = await scanWorkspace(root)
    const chunks = (at(scan.tree, 'big.bin') as FileNode).chunks
    expect(chunks.length).toBeGreaterThan(3)
    expect(scan.sources.size).toBe(new Set(chunks.map((c) => hexOf(c.hash))).size) // copy.bin adds none
    for (const [hex, src] of scan.sources) {
      // either copy may be named: whichever was hashed first
      expect([path.join(root, 'big.bin'), path.join(root, 'copy.bin')]).toContain(src.path)
      expect(sha(big.subarray(src.offset, src.offset + src.size))).toBe(hex)
      const fh = await fs.open(src.path, 'r')
      const { buffer } = await fh.read(Buffer.alloc(src.size), 0, src.size, src.offset)
      await fh.close()
      expect(sha(buffer)).toBe(hex)
    }
  })

  it('fails with ERR_WORKSPACE_TOO_LARGE past the depth limit, ERR_BAD_ARGUMENT on a bad root', async () => {
    await write(`${Array.from({ length: 257 }, () => 'd').join('/')}/f`)
    await expect(scanWorkspace(root)).rejects.toMatchObject({ code: 'ERR_WORKSPACE_TOO_LARGE' })
    await expect(scanWorkspace(path.join(root, 'nope'))).rejects.toMatchObject({ code: 'ERR_BAD_ARGUMENT' })
  })

  it('stops at an abort', async () => {
    await write('a')
    const ac = new AbortController()
    ac.abort()
    await expect(scanWorkspace(root, { signal: ac.signal })).rejects.toThrow()
  })

  it('reports progress, ending with done', async () => {
    await write('a', '12345')
    const events: unknown[] = []
    await scanWorkspace(root, { onProgress: (p) => events.push(p) })
    expect(events.at(-1)).toEqual({ files: 1, dirs: 1, bytes: 5, hashedFiles: 1, hashedBytes: 5, done: true })
  })

  it('skips a file that vanishes before it is read', async () => {
    await write('a', 'a')
    await write('gone', 'g')
    const warnings: string[] = []
    const vanishing: ChunkFn = async (p) => {
      if (p.endsWith('gone')) await fs.rm(p)
      return await chunkFile(p)
    }
    const scan = await scanWorkspace(root, { chunkFile: vanishing, onWarning: (m) => warnings.push(m) })
    expect([...scan.tree.entries.keys()]).toEqual(['a'])
    expect(warnings).toEqual([expect.stringMatching(/"gone".*vanished/)])
    expect(scan.stats.files).toBe(1)
  })

  it('reads a file that grew while it was read again, and keeps what it read when it keeps changing', async () => {
    await write('grows-once', 'a')
    await write('grows-always', 'a')
    let once = true
    const growing: ChunkFn = async (p) => {
      if (p.endsWith('grows-always') || (p.endsWith('grows-once') && once)) {
        if (p.endsWith('grows-once')) once = false
        await fs.appendFile(p, 'more')
      }
      return await chunkFile(p)
    }
    const warnings: string[] = []
    const cache = StatCache.empty(undefined, TRUST_NOW)
    const scan = await scanWorkspace(root, { chunkFile: growing, onWarning: (m) => warnings.push(m), statCache: cache })
    expect(at(scan.tree, 'grows-once')).toMatchObject({ size: 5 })
    expect((at(scan.tree, 'grows-always') as FileNode).size).toBe(9) // 'a' + 'more' twice
    expect(warnings).toEqual([expect.stringMatching(/"grows-always" kept changing/)])
  })
})

// Worker threads load compiled JavaScript: this runs against the build `npm test` makes first.
const DIST_SCAN = path.resolve('dist/src/fs-sync/scan.js')
const HAS_DIST = existsSync(DIST_SCAN) && existsSync(path.resolve('dist/src/fs-sync/scan-worker.js'))

describe('worker threads', () => {
  it.skipIf(!HAS_DIST)('hash big files with the same result as the main thread (needs `npm run build`)', async () => {
    const dist = await import(DIST_SCAN) as typeof import('../../src/fs-sync/scan.js')
    await write('big1.bin', randomBytes(5_000_000))
    await write('big2.bin', randomBytes(9_000_000))
    await write('small.txt', 'small')
    const inThread = await dist.scanWorkspace(root, { workers: 0 })
    const inWorkers = await dist.scanWorkspace(root, { workers: 2 })
    expect(hexOf(inWorkers.rootHash)).toBe(hexOf(inThread.rootHash))
    expect([...inWorkers.sources.keys()].sort()).toEqual([...inThread.sources.keys()].sort())
    await fs.rm(path.join(root, 'big2.bin'))
    await expect(dist.scanWorkspace(root, { workers: 2 })).resolves.toMatchObject({ stats: { files: 2 } })
  })

  it.skipIf(!HAS_DIST)('stat files on the stat thread with the same tree, reads and warnings as the main thread alone (needs `npm run build`)', async () => {
    const dist = await import(path.resolve('dist/src/fs-sync/index.js')) as typeof import('../../src/fs-sync/index.js')
    const { WORKER_MIN_FILES } = await import(path.resolve('dist/src/fs-sync/stat-workers.js')) as typeof import('../../src/fs-sync/stat-workers.js')
    const n = WORKER_MIN_FILES + 100
    for (let i = 0; i < n; i++) await write(`d${i % 7}/f${i}.txt`, `file ${i}\n`, i % 5 === 0 ? 0o755 : 0o644)
    await fs.symlink('../d0/f0.txt', path.join(root, 'd6', 'link'))
    execFileSync('mkfifo', [path.join(root, 'd6', 'fifo')])
    // A name that is not UTF-8 cannot be stat'ed by the name readdir gives: the thread's
    // failure is taken again on the main thread, for its message. One early in the walk
    // (the main thread's third), one late (the thread's part).
    for (const d of ['d0', 'd6']) await fs.writeFile(Buffer.concat([Buffer.from(path.join(root, d) + '/'), Buffer.from([0x62, 0xff])]), 'x')
    const worker = dist.StatWorker.start()!
    try {
      await waitUntil(() => worker.available)
      const scan = async (statWorker?: typeof worker): Promise<{ root: string, read: number, files: number, warnings: string[], exec: unknown, link: unknown }> => {
        const warnings: string[] = []
        const cache = dist.StatCache.empty(undefined, { racyMarginMs: 0 })
        const s = await dist.scanWorkspace(root, { statCache: cache, workers: 0, onWarning: (m) => warnings.push(m), ...(statWorker !== undefined ? { statWorker } : {}) })
        // once more with what the cache learnt: nothing is read again
        const again = await dist.scanWorkspace(root, { statCache: cache, workers: 0, onWarning: () => {}, ...(statWorker !== undefined ? { statWorker } : {}) })
        expect(hexOf(again.rootHash)).toBe(hexOf(s.rootHash))
        return { root: hexOf(s.rootHash), read: again.read.files, files: s.stats.files, warnings: warnings.sort(), exec: at(s.tree, 'd3/f2040.txt'), link: at(s.tree, 'd6/link') }
      }
      await new Promise((resolve) => setTimeout(resolve, 5))
      const alone = await scan()
      const threaded = await scan(worker)
      expect(threaded).toEqual(alone)
      expect(threaded.files).toBe(n)
      expect(threaded.read).toBe(0)
      expect(threaded.warnings).toHaveLength(3)
      expect(threaded.warnings.filter((w) => w.includes('its name is not valid UTF-8'))).toHaveLength(2)
      expect(threaded.exec).toMatchObject({ kind: 'file', exec: true })
      expect(threaded.link).toEqual({ kind: 'link', target: '../d0/f0.txt' })
      // Changes early and late in the walk are found by both.
      await write('d0/f0.txt', 'changed early')
      await write('d6/f6.txt', 'changed late')
      const alone2 = await scan()
      const threaded2 = await scan(worker)
      expect(threaded2.root).toBe(alone2.root)
      expect(threaded2.root).not.toBe(alone.root)
    } finally {
      await worker.close()
    }
  })
})

async function waitUntil (cond: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('stat cache', () => {
  const options = (cache: StatCache, extra: Partial<ScanOptions> = {}): ScanOptions => ({ statCache: cache, ...extra })

  it('does not read unchanged files again, across a save and a load', async () => {
    for (let i = 0; i < 20; i++) await write(`d${i % 3}/f${i}.txt`, `content ${i}`)
    const file = statCachePath(path.join(tmp, 'home'), root)
    const first = counting()
    let cache = await StatCache.load(file, TRUST_NOW)
    const one = await scanWorkspace(root, options(cache, { chunkFile: first.fn }))
    expect(first.files).toHaveLength(20)
    await cache.save()

    const second = counting()
    cache = await StatCache.load(file, TRUST_NOW)
    expect(cache.size).toBe(20)
    const two = await scanWorkspace(root, options(cache, { chunkFile: second.fn }))
    expect(second.files).toEqual([])
    expect(hexOf(two.rootHash)).toBe(hexOf(one.rootHash))
    expect(two.sources.size).toBe(one.sources.size)

    // a changed file is read again; so is one whose mtime moved
    await write('d1/f1.txt', 'changed!')
    await fs.utimes(path.join(root, 'd2/f2.txt'), new Date(), new Date(Date.now() - 5000))
    const third = counting()
    const three = await scanWorkspace(root, options(cache, { chunkFile: third.fn }))
    expect(third.files.sort()).toEqual(['d1/f1.txt', 'd2/f2.txt'])
    expect(hexOf(three.rootHash)).not.toBe(hexOf(one.rootHash))
  })

  it('after beginScanWith, reads only the files the caller did not write, or that changed since', async () => {
    for (const n of ['a', 'b', 'c', 'd', 'e']) await write(`w/${n}`, `content of ${n}`)
    const written = (await scanWorkspace(root, {})).tree
    const node = (n: string): FileNode => at(written, `w/${n}`) as FileNode
    const cache = StatCache.empty(undefined, { racyMarginMs: 0 })
    await cache.beginScanWith(root, [
      ['w/a', node('a')],
      ['w/b', node('b')],
      ['w/c', { ...node('c'), mtimeMs: node('c').mtimeMs - 1000 }], // not what is on disk
      ['w/d', node('d')],
      ['w/gone', node('d')]
    ])
    await write('w/d', 'd was written again, by someone else')
    const scan = counting()
    const got = await scanWorkspace(root, options(cache, { chunkFile: scan.fn }))
    expect(scan.files.sort()).toEqual(['w/c', 'w/d', 'w/e'])
    expect((at(got.tree, 'w/a') as FileNode).chunks).toEqual(node('a').chunks)
    expect((at(got.tree, 'w/d') as FileNode).size).toBe('d was written again, by someone else'.length)
  })

  it('drops entries of files no longer there when it saves', async () => {
    await write('keep', 'k')
    await write('drop', 'd')
    const file = path.join(tmp, 'cache.bin')
    let cache = await StatCache.load(file, TRUST_NOW)
    await scanWorkspace(root, options(cache))
    await cache.save()
    await fs.rm(path.join(root, 'drop'))
    cache = await StatCache.load(file, TRUST_NOW)
    await scanWorkspace(root, options(cache))
    await cache.save()
    expect((await StatCache.load(file, TRUST_NOW)).size).toBe(1)
  })

  it('does not trust a file changed just before the scan (racily clean)', async () => {
    await write('fresh', 'f')
    const cache = StatCache.empty() // default margin
    await scanWorkspace(root, options(cache))
    const again = counting()
    await scanWorkspace(root, options(cache, { chunkFile: again.fn }))
    expect(again.files).toEqual(['fresh'])
  })

  it('treats a corrupt, truncated or foreign cache file as empty', async () => {
    await write('a', 'a')
    const file = path.join(tmp, 'cache.bin')
    const cache = await StatCache.load(file, TRUST_NOW)
    await scanWorkspace(root, options(cache))
    await cache.save()
    const good = await fs.readFile(file)
    expect((await StatCache.load(file, TRUST_NOW)).size).toBe(1)

    const flipped = Buffer.from(good)
    flipped[20] = (flipped[20] ?? 0) ^ 0xff
    for (const bad of [flipped, good.subarray(0, good.length - 5), Buffer.from('garbage'), Buffer.alloc(0)]) {
      await fs.writeFile(file, bad)
      const loaded = await StatCache.load(file, TRUST_NOW)
      expect(loaded.size).toBe(0)
      const reads = counting()
      await scanWorkspace(root, options(loaded, { chunkFile: reads.fn }))
      expect(reads.files).toEqual(['a'])
    }
    await fs.writeFile(file, good)
    expect((await StatCache.load(file, { ...TRUST_NOW, chunkerId: 'another chunker' })).size).toBe(0)
    await expect(StatCache.load(path.join(tmp, 'missing', 'x.bin'))).resolves.toMatchObject({ size: 0 })
  })

  it('keys the file on the absolute root', () => {
    const a = statCachePath('/home/u/.vgrid', '/work/a')
    expect(a).toMatch(/^\/home\/u\/\.vgrid\/statcache\/[0-9a-f]{64}\.bin$/)
    expect(statCachePath('/home/u/.vgrid', '/work/b')).not.toBe(a)
    expect(statCachePath('/home/u/.vgrid', '/work/x/../a')).toBe(a)
  })
})

describe('floorMs', () => {
  it.each([
    [0n, 0],
    [1_999_999n, 1],
    [1_700_000_000_987_654_321n, 1_700_000_000_987],
    [-1n, -1],
    [-1_000_000n, -1],
    [-1_000_001n, -2]
  ])('%s ns -> %s ms', (ns, ms) => {
    expect(floorMs(ns)).toBe(ms)
  })
})
