/**
 * Write once (issue 19): the chunks a sync writes into a copy stay in the copy's files, not
 * in the store as well, and later syncs read them from there, never through a link a guest
 * put in the copy, and only when the bytes are still the chunk.
 */
import { afterEach, describe, expect, it } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { memoryChannelPair } from '../../src/common/channel.js'
import { BlobFetcher, ChunkStore, CopyChunks, ExportRegistry, scanWorkspace, syncCopy, type FileNode } from '../../src/fs-sync/index.js'
import { noise } from '../helpers/noise.js'
import { removeTempDirs, tempDir } from '../helpers/procs.js'

const PEER = 'puller'
const sha = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest()
const file = (...parts: Buffer[]): FileNode => ({ kind: 'file', size: parts.reduce((n, p) => n + p.length, 0), exec: false, mtimeMs: 0, chunks: parts.map((p) => ({ hash: sha(p), size: p.length })) })

afterEach(removeTempDirs)

describe('CopyChunks', () => {
  it('reads a chunk where a copy holds it, and forgets it once the file no longer does', () => {
    const root = tempDir('vgrid-cc-')
    const [a, b] = [randomBytes(20_000), randomBytes(30_000)]
    fs.mkdirSync(path.join(root, 'd'))
    fs.writeFileSync(path.join(root, 'd/f.bin'), Buffer.concat([a, b]))
    const cc = new CopyChunks()
    cc.add(root, 'd/f.bin', file(a, b))
    expect(Buffer.from(cc.get(sha(b))!)).toEqual(b)
    expect(Buffer.from(cc.get(sha(a))!)).toEqual(a)
    // an edit in place: the chunk is no longer there, and is no longer claimed
    const fd = fs.openSync(path.join(root, 'd/f.bin'), 'r+')
    fs.writeSync(fd, Buffer.from([b[5]! ^ 1]), 0, 1, a.length + 5)
    fs.closeSync(fd)
    expect(cc.get(sha(b))).toBeUndefined()
    expect(cc.locate(sha(b))).toBeUndefined()
    expect(cc.locate(sha(a))).toBeDefined()
    // a file cut short
    fs.truncateSync(path.join(root, 'd/f.bin'), 100)
    expect(cc.get(sha(a))).toBeUndefined()
    expect(cc.size).toBe(0)
  })

  it('never reads through a link a guest put in the copy, even to the very bytes', () => {
    const root = tempDir('vgrid-cc-')
    const secret = tempDir('vgrid-cc-secret-')
    const key = randomBytes(4096)
    fs.writeFileSync(path.join(secret, 'key'), key)
    fs.mkdirSync(path.join(root, 'd'))
    fs.writeFileSync(path.join(root, 'd/key'), key)
    const cc = new CopyChunks()
    cc.add(root, 'd/key', file(key))
    cc.add(root, 'top', file(key))
    // the guest swaps the directory for a link to the agent's own files (same name, same bytes)
    fs.rmSync(path.join(root, 'd'), { recursive: true })
    fs.symlinkSync(secret, path.join(root, 'd'))
    expect(cc.get(sha(key))).toBeUndefined()
    // and the file itself for a link
    cc.add(root, 'top', file(key))
    fs.symlinkSync(path.join(secret, 'key'), path.join(root, 'top'))
    expect(cc.get(sha(key))).toBeUndefined()
  })

  it('does not wait on a FIFO put where a file was', () => {
    const root = tempDir('vgrid-cc-')
    const chunk = randomBytes(1000)
    execFileSync('mkfifo', [path.join(root, 'f')])
    const cc = new CopyChunks()
    cc.add(root, 'f', file(chunk))
    expect(cc.get(sha(chunk))).toBeUndefined()
  })

  it('is capped: past the cap the oldest chunks are forgotten', () => {
    const root = tempDir('vgrid-cc-')
    const chunks = Array.from({ length: 5 }, () => randomBytes(100))
    fs.writeFileSync(path.join(root, 'f'), Buffer.concat(chunks))
    const cc = new CopyChunks(3)
    cc.add(root, 'f', file(...chunks))
    expect(cc.size).toBe(3)
    expect(cc.locate(sha(chunks[0]!))).toBeUndefined()
    expect(Buffer.from(cc.get(sha(chunks[4]!))!)).toEqual(chunks[4])
  })
})

/** Syncs `ws` into `copyDir` as an executor does; how many blobs travelled. */
async function pull (ws: string, copyDir: string, store: ChunkStore, copyChunks: CopyChunks): Promise<number> {
  return (await pullSaying(ws, copyDir, store, copyChunks)).blobs
}

/** pull, with the chunks the sync says it was sent (the user's summary line). */
async function pullSaying (ws: string, copyDir: string, store: ChunkStore, copyChunks: CopyChunks): Promise<{ blobs: number, said: number }> {
  const scan = await scanWorkspace(ws, {})
  const registry = new ExportRegistry()
  const session = registry.add({ rootHash: scan.rootHash, blobs: scan.blobs, sources: { get: (hex) => scan.sources.get(hex) }, peer: PEER })
  const [near, far] = memoryChannelPair()
  void registry.serve(far, PEER)
  let fetcher: BlobFetcher | undefined
  try {
    const { progress } = await syncCopy({ copyDir, root: scan.rootHash, store, copyChunks, openFetcher: async () => (fetcher = await BlobFetcher.open(near, session)) })
    return { blobs: fetcher?.stats.blobs ?? 0, said: progress.sentChunks }
  } finally {
    fetcher?.close()
  }
}

const MiB = 1024 ** 2

/** An executor's home with its store and copies' index, and a workspace to sync from. */
async function onExecutor (test: (e: { ws: string, home: string, store: ChunkStore, cc: CopyChunks }) => Promise<void>): Promise<void> {
  const ws = tempDir('vgrid-ws-')
  const home = tempDir('vgrid-exec-')
  const store = await ChunkStore.open(path.join(home, 'store'))
  try {
    await test({ ws, home, store, cc: new CopyChunks() })
  } finally {
    await store.close()
  }
}

describe('a sync with CopyChunks', () => {
  it('writes the files\' bytes once, and a second copy, an insertion or a rename sends only what is new', async () => await onExecutor(async ({ ws, home, store, cc }) => {
    // seeded: how many chunks an insertion changes depends on where the cut points fall (with
    // fresh random bytes, 3 or more in about 1 case in 30)
    const big = noise(8 * MiB, 1)
    fs.writeFileSync(path.join(ws, 'big.bin'), big)
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(ws, `s${i}.txt`), randomBytes(3000))
    // two files with the same bytes: that chunk is kept in the store for its second user
    fs.writeFileSync(path.join(ws, 'same-1.txt'), 'same bytes\n')
    fs.writeFileSync(path.join(ws, 'same-2.txt'), 'same bytes\n')
    const first = await pull(ws, path.join(home, 'copy-1'), store, cc)
    expect(fs.readFileSync(path.join(home, 'copy-1/big.bin')).equals(big)).toBe(true)
    // the store holds the directory records and the shared chunk, not the 8 MiB
    expect(store.stats().bytes).toBeLessThan(64 * 1024)
    expect(first).toBeGreaterThan(100)

    // a second copy of the same workspace: nothing travels, it is read from the first
    expect(await pull(ws, path.join(home, 'copy-2'), store, cc)).toBe(0)
    expect(fs.readFileSync(path.join(home, 'copy-2/big.bin')).equals(big)).toBe(true)
    expect(fs.readFileSync(path.join(home, 'copy-2/same-2.txt'), 'utf8')).toBe('same bytes\n')

    // bytes inserted at the front: the copy's old file gives the rest
    const edited = Buffer.concat([noise(1000, 2), big])
    fs.writeFileSync(path.join(ws, 'big.bin'), edited)
    expect(await pull(ws, path.join(home, 'copy-1'), store, cc)).toBeLessThanOrEqual(3)
    expect(fs.readFileSync(path.join(home, 'copy-1/big.bin')).equals(edited)).toBe(true)

    // renamed: the old path goes before anything is written, so those chunks travel again
    // unless another copy holds them (copy-1 holds the edited bytes now; copy-2 the old ones)
    fs.renameSync(path.join(ws, 'big.bin'), path.join(ws, 'moved.bin'))
    expect(await pull(ws, path.join(home, 'copy-1'), store, cc)).toBeLessThanOrEqual(3)
    expect(fs.readFileSync(path.join(home, 'copy-1/moved.bin')).equals(edited)).toBe(true)
    expect(fs.existsSync(path.join(home, 'copy-1/big.bin'))).toBe(false)
  }))

  it('sends again what a guest changed in the copy that held it, and the next copy is still right', async () => await onExecutor(async ({ ws, home, store, cc }) => {
    const data = randomBytes(2 * MiB)
    fs.writeFileSync(path.join(ws, 'data.bin'), data)
    const all = await pull(ws, path.join(home, 'copy-1'), store, cc)
    // a guest overwrites the middle of its copy
    const fd = fs.openSync(path.join(home, 'copy-1/data.bin'), 'r+')
    fs.writeSync(fd, randomBytes(300_000), 0, 300_000, MiB)
    fs.closeSync(fd)
    const again = await pull(ws, path.join(home, 'copy-2'), store, cc)
    expect(again).toBeGreaterThan(0)
    expect(again).toBeLessThan(all)
    expect(fs.readFileSync(path.join(home, 'copy-2/data.bin')).equals(data)).toBe(true)
  }))

  it('fetches a chunk its copy no longer holds, and says it sent it', async () => await onExecutor(async ({ ws, home, store, cc }) => {
    // seeded: a flipped byte can also move a cut point, rarely, and then two chunks travel
    const data = noise(2 * MiB, 3)
    fs.writeFileSync(path.join(ws, 'data.bin'), data)
    const flip = (): void => {
    const fd = fs.openSync(path.join(ws, 'data.bin'), 'r+')
    const b = Buffer.alloc(1)
    fs.readSync(fd, b, 0, 1, MiB)
    b[0] = b[0]! ^ 0xff
    fs.writeSync(fd, b, 0, 1, MiB)
    fs.closeSync(fd)
    }
    const copy = path.join(home, 'copy')
    await pull(ws, copy, store, cc)
    flip()
    expect((await pullSaying(ws, copy, store, cc)).said).toBe(1)
    // back as it was: the copy's index still names the old chunk in this file, but the
    // patch above wrote over it, so it travels again, and the summary says so
    flip()
    expect(await pullSaying(ws, copy, store, cc)).toMatchObject({ said: 1 })
    expect(fs.readFileSync(path.join(copy, 'data.bin')).equals(fs.readFileSync(path.join(ws, 'data.bin')))).toBe(true)
  }))
})
