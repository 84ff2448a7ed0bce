/**
 * The puller's window against a real provider over an in-process channel: blobs fetched
 * held stay counted until their consumer releases them, so a consumer that falls behind
 * stops the network instead of filling memory; a blob someone waits on now is never stuck
 * behind them.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { memoryChannelPair, type FrameChannel } from '../../src/common/channel.js'
import fs from 'node:fs'
import path from 'node:path'
import { BlobFetcher, ChunkStore, ExportRegistry, scanWorkspace, syncCopy } from '../../src/fs-sync/index.js'
import { tempDir, removeTempDirs } from '../helpers/procs.js'
import { PULL_WINDOW_BYTES } from '../../src/protocol/sync.js'
import { waitFor } from '../helpers/wait.js'

const PEER = 'puller'

afterEach(removeTempDirs)
const BLOB_BYTES = 256 * 1024
const sha = (b: Uint8Array): Uint8Array => createHash('sha256').update(b).digest()
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** A provider serving `count` random blobs plus one root record; counts the hashes asked for. */
async function setUp (count: number): Promise<{ fetcher: BlobFetcher, hashes: Uint8Array[], blobs: Map<string, Uint8Array>, asked: () => number }> {
  const blobs = new Map<string, Uint8Array>()
  const hashes: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    const data = randomBytes(BLOB_BYTES)
    const h = sha(data)
    blobs.set(hex(h), data)
    hashes.push(h)
  }
  const rootRecord = Uint8Array.of(1, 2, 3)
  const rootHash = sha(rootRecord)
  blobs.set(hex(rootHash), rootRecord)
  const registry = new ExportRegistry()
  const session = registry.add({ rootHash, blobs, sources: { get: () => undefined }, peer: PEER })
  const [near, far] = memoryChannelPair()
  let asked = 0
  // the real channel, with the hashes of each want counted on their way out
  const counting: FrameChannel = {
    get closed () { return near.closed },
    send: async (msg) => {
      const m = msg as { t: string, hashes?: Uint8Array }
      if (m.t === 'want') asked += m.hashes!.byteLength / 32
      await near.send(msg)
    },
    recv: async () => await near.recv(),
    close: async () => { await near.close() },
    destroy: (err) => { near.destroy(err) }
  }
  void registry.serve(far, PEER)
  const fetcher = await BlobFetcher.open(counting, session)
  return { fetcher, hashes, blobs, asked: () => asked }
}

/** Lets every message in flight be answered: the provider and the fetcher run on this loop. */
async function settle (): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve))
}

describe('BlobFetcher', () => {
  it('asks for no more than a window of held blobs until they are released, then for the rest', async () => {
    const count = Math.ceil(PULL_WINDOW_BYTES / BLOB_BYTES) * 2 + 10
    const { fetcher, hashes, blobs, asked } = await setUp(count)
    const got: Array<{ data: Uint8Array, release: () => void }> = []
    const all = hashes.map(async (h) => {
      const r = await fetcher.fetchHeld(h, BLOB_BYTES)
      got.push(r)
      return r
    })
    const windowBlobs = PULL_WINDOW_BYTES / BLOB_BYTES
    await waitFor(() => got.length >= windowBlobs && got.length === asked(), "a window of held blobs", 10_000)
    await settle()
    // nothing released: the provider was asked for one window and no more
    expect(asked()).toBe(got.length)
    expect(got.length).toBeLessThanOrEqual(windowBlobs + 1)
    expect(got.length).toBeLessThan(count)

    // a blob someone waits on now goes ahead of the held ones
    const urgent = await fetcher.fetch(hashes[count - 1]!, BLOB_BYTES)
    expect(hex(sha(urgent))).toBe(hex(hashes[count - 1]!))

    // a consumer that keeps up releases what it took: everything arrives, intact
    const releaseAll = (): void => { for (const r of got.splice(0)) r.release() }
    const done = Promise.all(all)
    const pump = setInterval(releaseAll, 1)
    try {
      const results = await done
      results.forEach((r, i) => { expect(Buffer.compare(r.data, blobs.get(hex(hashes[i]!))!)).toBe(0) })
    } finally {
      clearInterval(pump)
    }
    releaseAll()
    fetcher.close()
  })

  it('a blob asked for twice, held then not, is released once and counted right', async () => {
    const { fetcher, hashes, asked } = await setUp(3)
    const [held, plain] = await Promise.all([fetcher.fetchHeld(hashes[0]!, BLOB_BYTES), fetcher.fetch(hashes[0]!, BLOB_BYTES)])
    expect(Buffer.compare(held.data, plain)).toBe(0)
    held.release()
    held.release()
    expect(asked()).toBe(1)
    // the window is whole again: the other two come at once
    const rest = await Promise.all(hashes.slice(1).map(async (h) => await fetcher.fetchHeld(h, BLOB_BYTES)))
    expect(rest).toHaveLength(2)
    fetcher.close()
  })

  it('refuses a held chunk whose bytes are not the size its tree declared', async () => {
    const { fetcher, hashes } = await setUp(1)
    const err = await fetcher.fetchHeld(hashes[0]!, 1).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_BAD_MESSAGE' })
    expect(String((err as Error).message)).toMatch(/262144 bytes, its tree says 1/)
    fetcher.close()
  })
})

describe('a sync into a copy', () => {
  it('asks for chunks a bounded number ahead of the files being written, not all at once, and writes every file', async () => {
    const ws = tempDir('vgrid-ws-')
    const files = 300
    for (let i = 0; i < files; i++) {
      fs.mkdirSync(path.join(ws, `d${i % 7}`), { recursive: true })
      fs.writeFileSync(path.join(ws, `d${i % 7}`, `f${i}.bin`), randomBytes(100 + i))
    }
    const scan = await scanWorkspace(ws, {})
    const registry = new ExportRegistry()
    const session = registry.add({ rootHash: scan.rootHash, blobs: scan.blobs, sources: { get: (h) => scan.sources.get(h) }, peer: PEER })
    const [near, far] = memoryChannelPair()
    void registry.serve(far, PEER)
    const store = await ChunkStore.open(path.join(tempDir('vgrid-exec-'), 'store'))
    const copyDir = path.join(tempDir('vgrid-copies-'), 'copy')
    // asked for (fetchHeld) and not yet taken by a file (released), at most
    let ahead = 0
    let most = 0
    let fetcher: BlobFetcher | undefined
    try {
      await syncCopy({
        copyDir, root: scan.rootHash, store, requestAhead: 16,
        openFetcher: async () => {
          const f = fetcher = await BlobFetcher.open(near, session)
          const held = f.fetchHeld.bind(f)
          f.fetchHeld = async (hash, size) => {
            most = Math.max(most, ++ahead)
            const got = await held(hash, size)
            return { data: got.data, release: () => { ahead--; got.release() } }
          }
          return f
        }
      })
    } finally {
      fetcher?.close()
      await store.close()
    }
    expect(most).toBeGreaterThan(1)
    expect(most).toBeLessThanOrEqual(16)
    for (let i = 0; i < files; i++) {
      const rel = path.join(`d${i % 7}`, `f${i}.bin`)
      expect(fs.readFileSync(path.join(copyDir, rel)).equals(fs.readFileSync(path.join(ws, rel))), rel).toBe(true)
    }
  })
})
