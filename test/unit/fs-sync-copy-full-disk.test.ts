/**
 * A copy whose disk fills up half-way through a sync (issue 16): the error comes back at
 * once. It used to take 60 s: the file that failed left its later chunks held in the
 * fetcher's window, the files still in flight waited for chunks behind them, and only the
 * provider's idle timeout broke the stream. The copy sits on a small tmpfs, the store on
 * a large disk, so the store's own room check lets the sync start.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { memoryChannelPair } from '../../src/common/channel.js'
import { BlobFetcher, ChunkStore, ExportRegistry, scanWorkspace, syncCopy } from '../../src/fs-sync/index.js'
import { tempDir } from '../helpers/procs.js'

const PEER = 'puller'
let small: string | undefined
let cannot: string | undefined

beforeAll(() => {
  const dir = tempDir('vgrid-small-copy-')
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', dir], { encoding: 'utf8' })
  if (r.status !== 0) {
    cannot = `cannot mount a tmpfs (needs root): ${(r.stderr ?? '').trim()}`
    console.warn(`fs-sync-copy-full-disk.test.ts: skipped: ${cannot}`)
    return
  }
  small = dir
})

afterAll(() => {
  // lazily when a write the test gave up on still holds it open
  if (small !== undefined && spawnSync('umount', [small]).status !== 0) spawnSync('umount', ['-l', small])
})

describe('a sync into a full disk', () => {
  it('fails at once with ENOSPC, not after the idle timeout', async (ctx) => {
    if (cannot !== undefined) ctx.skip()
    const ws = tempDir('vgrid-ws-')
    // One file that fails with more than the fetcher's window (24 MiB) still to come, beside small ones written at the same time.
    fs.writeFileSync(path.join(ws, 'a.bin'), randomBytes(80 * 1024 ** 2))
    for (let i = 0; i < 16; i++) fs.writeFileSync(path.join(ws, `b${i}.bin`), randomBytes(512 * 1024))
    const scan = await scanWorkspace(ws, {})
    const registry = new ExportRegistry()
    const session = registry.add({ rootHash: scan.rootHash, blobs: scan.blobs, sources: { get: (hex) => scan.sources.get(hex) }, peer: PEER })
    const [near, far] = memoryChannelPair()
    void registry.serve(far, PEER)
    const store = await ChunkStore.open(tempDir('vgrid-store-'))
    let fetcher: BlobFetcher | undefined
    const t0 = Date.now()
    try {
      const err = await syncCopy({
        copyDir: path.join(small!, 'copy'),
        root: scan.rootHash,
        store,
        openFetcher: async () => (fetcher = await BlobFetcher.open(near, session))
      }).then(() => undefined, (e: unknown) => e as NodeJS.ErrnoException)
      expect(err?.code).toBe('ENOSPC')
      // the bug stalled until the 60 s idle timeout: this test's own 30 s bound catches it
      console.log(`failed with ENOSPC after ${Date.now() - t0} ms`)
    } finally {
      fetcher?.close()
      await store.close().catch(() => {})
    }
  }, 30_000)
})
