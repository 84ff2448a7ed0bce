import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { VgridError } from '../../src/common/errors.js'
import type { Logger } from '../../src/common/log.js'
import { INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES, PACK_HEADER_BYTES, packFileName } from '../../src/fs-sync/pack.js'
import { ChunkStore, MAX_OPEN_PACKS, MIN_PACK_BYTES, keyOf, type StoreOptions } from '../../src/fs-sync/store.js'
import { blobKey } from '../../src/fs-sync/hash.js'
import { STORE_LOCK_FILE } from '../../src/fs-sync/store-lock.js'
import { MAX_BLOB_BYTES } from '../../src/fs-sync/types.js'
import { waitFor } from '../helpers/wait.js'

const KiB = 1024
/** Four 64 KiB blobs fill a pack of this size exactly; the fifth starts a new pack. */
const PACK_OF_4 = PACK_HEADER_BYTES + 4 * 64 * KiB
/** What such a pack takes on disk with its index. */
const PACK_OF_4_DISK = PACK_OF_4 + INDEX_HEADER_BYTES + 4 * INDEX_ENTRY_BYTES

interface Blob { hash: Buffer, data: Buffer }

function blob (size = 64 * KiB, seed?: number): Blob {
  const data = seed === undefined ? crypto.randomBytes(size) : Buffer.alloc(size, seed)
  return { hash: crypto.createHash('sha256').update(data).digest(), data }
}

function quietLog (): Logger & { warnings: string[] } {
  const warnings: string[] = []
  return { warnings, debug: () => {}, info: () => {}, warn: (msg) => { warnings.push(msg) }, error: (msg) => { warnings.push(msg) } }
}

/** Buffer.equals: vitest's toEqual walks big buffers byte by byte, seconds per MiB. */
function expectBytes (got: Uint8Array | undefined, want: Buffer): void {
  expect(got).toBeDefined()
  expect(Buffer.from(got!.buffer, got!.byteOffset, got!.byteLength).equals(want)).toBe(true)
}

function refusal (err: unknown): VgridError {
  expect(err).toBeInstanceOf(VgridError)
  return err as VgridError
}

let dir: string
let open: ChunkStore[] = []

async function openStore (opts: StoreOptions = {}): Promise<ChunkStore> {
  const s = await ChunkStore.open(dir, { log: quietLog(), ...opts })
  open.push(s)
  return s
}

async function closeStore (s: ChunkStore): Promise<void> {
  await s.close()
  open = open.filter((x) => x !== s)
}

function packFiles (): string[] {
  return fs.readdirSync(dir).filter((n) => n.startsWith('pack-')).sort()
}

function diskBytes (): number {
  return packFiles().reduce((sum, n) => sum + fs.statSync(path.join(dir, n)).size, 0)
}

async function exitedPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await new Promise((resolve) => child.on('exit', resolve))
  return child.pid!
}

beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-store-')) })
afterEach(async () => {
  for (const s of open) await s.close().catch(() => {})
  open = []
  fs.rmSync(dir, { recursive: true, force: true })
})

describe('blob keys', () => {
  it('blobKey is the latin1 form of the hash (as the store has always keyed it), one character a byte', () => {
    const all = new Uint8Array(32).map((_, i) => 255 - i * 8)
    for (const h of [all, new Uint8Array(32), ...Array.from({ length: 200 }, () => new Uint8Array(crypto.randomBytes(32)))]) {
      const latin1 = Buffer.from(h).toString('latin1')
      expect(blobKey(h)).toBe(latin1)
      expect(keyOf(h)).toBe(latin1)
      expect(blobKey(h)).toHaveLength(32)
    }
    // a view into a larger buffer keys only its own bytes
    const big = new Uint8Array(crypto.randomBytes(96))
    expect(blobKey(big.subarray(32, 64))).toBe(Buffer.from(big.subarray(32, 64)).toString('latin1'))
  })

  it('a store finds a blob by the key of its hash', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-store-key-'))
    const store = await ChunkStore.open(dir)
    try {
      const data = new Uint8Array(crypto.randomBytes(1000))
      const hash = new Uint8Array(crypto.createHash('sha256').update(data).digest())
      expect(store.hasKey(blobKey(hash))).toBe(false)
      await store.put(hash, data)
      expect(store.hasKey(blobKey(hash))).toBe(true)
      expect(store.has(hash)).toBe(true)
    } finally {
      await store.close()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('ChunkStore', () => {
  it('gives back what was put, before and after it reaches the disk', async () => {
    const s = await openStore()
    const blobs = [blob(), blob(16 * KiB), blob(MAX_BLOB_BYTES), blob(0), blob(100)]
    for (const b of blobs) await s.put(b.hash, b.data)
    // still in the write buffer
    for (const b of blobs) {
      expect(s.has(b.hash)).toBe(true)
      expectBytes(await s.get(b.hash), b.data)
    }
    await s.flush()
    for (const b of blobs) expectBytes(await s.get(b.hash), b.data)
    const unknown = blob(10)
    expect(s.has(unknown.hash)).toBe(false)
    expect(await s.get(unknown.hash)).toBeUndefined()
    expect(s.stats()).toMatchObject({ blobs: 5, packs: 1 })
  })

  it('copies what it is given, so the caller may reuse its buffer', async () => {
    const s = await openStore()
    const b = blob()
    const reused = Buffer.from(b.data)
    await s.put(b.hash, reused)
    reused.fill(0)
    expectBytes(await s.get(b.hash), b.data)
  })

  it('stores a blob once however often it is put', async () => {
    const s = await openStore()
    const b = blob()
    await s.put(b.hash, b.data)
    await s.flush()
    const before = s.stats()
    for (let i = 0; i < 5; i++) await s.put(b.hash, b.data)
    await s.flush()
    expect(s.stats()).toEqual(before)
    expect(before.blobs).toBe(1)
    expect(diskBytes()).toBe(before.bytes)
  })

  it('refuses a hash of the wrong size and a blob past the limit', async () => {
    const s = await openStore()
    expect(refusal(await s.put(new Uint8Array(31), new Uint8Array(1)).catch((e) => e)).code).toBe('ERR_BAD_ARGUMENT')
    expect(() => s.has(new Uint8Array(33))).toThrow(VgridError)
    const big = new Uint8Array(MAX_BLOB_BYTES + 1)
    expect(refusal(await s.put(new Uint8Array(32), big).catch((e) => e)).code).toBe('ERR_BAD_ARGUMENT')
    expect(refusal(await ChunkStore.open(dir + '-x', { packBytes: 10 }).catch((e) => e)).code).toBe('ERR_BAD_ARGUMENT')
  })

  it('keeps its blobs across close and open, and appends to the last pack again', async () => {
    let s = await openStore({ packBytes: PACK_OF_4 })
    const first = Array.from({ length: 6 }, () => blob())
    for (const b of first) await s.put(b.hash, b.data)
    await closeStore(s)
    expect(packFiles()).toEqual([packFileName(1, 'dat'), packFileName(1, 'idx'), packFileName(2, 'dat'), packFileName(2, 'idx')])

    s = await openStore({ packBytes: PACK_OF_4 })
    expect(s.stats()).toMatchObject({ blobs: 6, packs: 2 })
    for (const b of first) expectBytes(await s.get(b.hash), b.data)
    // pack 2 holds two blobs and has room for two more
    const second = [blob(), blob()]
    for (const b of second) await s.put(b.hash, b.data)
    await closeStore(s)
    expect(packFiles()).toHaveLength(4)

    s = await openStore({ packBytes: PACK_OF_4 })
    expect(s.stats()).toMatchObject({ blobs: 8, packs: 2, bytes: 2 * PACK_OF_4_DISK })
    for (const b of [...first, ...second]) expectBytes(await s.get(b.hash), b.data)
    expect(diskBytes()).toBe(s.stats().bytes)
  })

  describe('after a crash', () => {
    // a crashed agent leaves its lock behind, with a pid that is gone
    async function crashed (blobs: Blob[]): Promise<{ dat: string, idx: string }> {
      const s = await openStore()
      for (const b of blobs) await s.put(b.hash, b.data)
      await closeStore(s)
      fs.writeFileSync(path.join(dir, STORE_LOCK_FILE), `${await exitedPid()}\n`)
      return { dat: path.join(dir, packFileName(1, 'dat')), idx: path.join(dir, packFileName(1, 'idx')) }
    }

    async function expectOnly (kept: Blob[], lost: Blob[]): Promise<void> {
      let s = await openStore()
      for (const b of kept) expectBytes(await s.get(b.hash), b.data)
      for (const b of lost) expect(s.has(b.hash)).toBe(false)
      expect(diskBytes()).toBe(s.stats().bytes)
      // the torn tail was cut, so new blobs land where the index says
      const extra = blob()
      await s.put(extra.hash, extra.data)
      await closeStore(s)
      s = await openStore()
      for (const b of [...kept, extra]) expectBytes(await s.get(b.hash), b.data)
      expect(s.stats().blobs).toBe(kept.length + 1)
    }

    it('loses only a blob whose data was torn', async () => {
      const blobs = [blob(), blob(), blob(), blob()]
      const { dat } = await crashed(blobs)
      fs.truncateSync(dat, fs.statSync(dat).size - 100)
      await expectOnly(blobs.slice(0, 3), blobs.slice(3))
    })

    it('loses only blobs whose data was never written (index entries past the end)', async () => {
      const blobs = [blob(), blob(), blob(), blob()]
      const { dat } = await crashed(blobs)
      fs.truncateSync(dat, PACK_HEADER_BYTES + 2 * 64 * KiB)
      await expectOnly(blobs.slice(0, 2), blobs.slice(2))
    })

    it('loses only a blob whose index entry was torn, and drops data with no entry', async () => {
      const blobs = [blob(), blob(), blob()]
      const { dat, idx } = await crashed(blobs)
      fs.truncateSync(idx, fs.statSync(idx).size - 7)
      fs.appendFileSync(dat, crypto.randomBytes(5000))
      await expectOnly(blobs.slice(0, 2), blobs.slice(2))
    })

    it('logs which pack it cut, by how much and what was lost, and remembers why until the blob comes again', async () => {
      const blobs = [blob(), blob(), blob(), blob()]
      const { dat } = await crashed(blobs)
      const size = fs.statSync(dat).size
      fs.truncateSync(dat, PACK_HEADER_BYTES + 2 * 64 * KiB + 100)
      const log = quietLog()
      const s = await openStore({ log })
      expect(log.warnings).toHaveLength(1)
      expect(log.warnings[0]).toMatch(/^pack 1 of .* had a torn tail .*: cut 100 data bytes and 80 index bytes, losing 2 blobs whose data was gone/)
      expect(size - fs.statSync(dat).size).toBe(2 * 64 * KiB)
      expect(s.lostWhy(blobs[2]!.hash)).toBe('pack 1 had a torn tail: 100 bytes were cut when the agent started')
      expect(s.lostWhy(blobs[3]!.hash)).toBeDefined()
      expect(s.lostWhy(blobs[0]!.hash)).toBeUndefined()
      await s.put(blobs[2]!.hash, blobs[2]!.data)
      expect(s.lostWhy(blobs[2]!.hash)).toBeUndefined()
    })

    it('says nothing of a pack that held no blob yet (a crash before its first write)', async () => {
      const { dat, idx } = await crashed([blob()])
      fs.writeFileSync(path.join(dir, packFileName(2, 'dat')), fs.readFileSync(dat).subarray(0, PACK_HEADER_BYTES))
      fs.writeFileSync(path.join(dir, packFileName(2, 'idx')), fs.readFileSync(idx).subarray(0, INDEX_HEADER_BYTES))
      const log = quietLog()
      const s = await openStore({ log })
      expect(s.stats()).toMatchObject({ blobs: 1, packs: 1 })
      expect(packFiles()).toEqual([packFileName(1, 'dat'), packFileName(1, 'idx')])
      expect(log.warnings).toEqual([])
    })

    it('drops a pack with no whole blob and one missing its index', async () => {
      const blobs = [blob()]
      const { dat, idx } = await crashed(blobs)
      fs.truncateSync(idx, 3)
      fs.writeFileSync(path.join(dir, packFileName(2, 'dat')), 'orphan')
      const s = await openStore()
      expect(s.stats()).toMatchObject({ blobs: 0, packs: 0 })
      expect(fs.existsSync(dat)).toBe(false)
      expect(packFiles()).toEqual([])
      // pack numbers are not reused
      await s.put(blobs[0]!.hash, blobs[0]!.data)
      await s.flush()
      expect(packFiles()).toEqual([packFileName(3, 'dat'), packFileName(3, 'idx')])
    })
  })

  it('never returns corrupt bytes: a flipped byte makes the blob missing', async () => {
    let s = await openStore()
    const blobs = [blob(), blob(), blob()]
    for (const b of blobs) await s.put(b.hash, b.data)
    await closeStore(s)
    const dat = path.join(dir, packFileName(1, 'dat'))
    const bytes = fs.readFileSync(dat)
    bytes[PACK_HEADER_BYTES + 64 * KiB + 1000]! ^= 0x40 // inside the second blob
    fs.writeFileSync(dat, bytes)

    const log = quietLog()
    s = await openStore({ log })
    expect(s.has(blobs[1]!.hash)).toBe(true)
    expect(await s.get(blobs[1]!.hash)).toBeUndefined()
    expect(s.has(blobs[1]!.hash)).toBe(false)
    expect(log.warnings.join('\n')).toContain(blobs[1]!.hash.toString('hex'))
    expect(s.lostWhy(blobs[1]!.hash)).toMatch(/^its copy in pack 1 was corrupt/)
    expectBytes(await s.get(blobs[0]!.hash), blobs[0]!.data)
    expectBytes(await s.get(blobs[2]!.hash), blobs[2]!.data)

    // fetched again, it is stored again, and the good copy wins after a restart
    await s.put(blobs[1]!.hash, blobs[1]!.data)
    await closeStore(s)
    s = await openStore()
    expectBytes(await s.get(blobs[1]!.hash), blobs[1]!.data)
  })

  it('evicts the least recently used packs, keeps the total under the cap and remembers use across restarts', async () => {
    let t = 1_000_000
    const now = (): number => t
    const capBytes = 3 * PACK_OF_4_DISK
    let s = await openStore({ packBytes: PACK_OF_4, capBytes, now })
    const packs = [0, 1, 2].map(() => [blob(), blob(), blob(), blob()])
    for (const p of packs) {
      t += 1000
      for (const b of p) await s.put(b.hash, b.data)
      await s.flush()
    }
    expect(s.stats()).toMatchObject({ packs: 3, bytes: capBytes })
    t += 1000
    s.touch(packs[0]![0]!.hash) // pack 1 was needed again: pack 2 is now the coldest

    t += 1000
    const fourth = [blob(), blob(), blob(), blob()]
    for (const b of fourth) await s.put(b.hash, b.data)
    await s.flush()
    for (const b of packs[1]!) expect(s.has(b.hash)).toBe(false)
    for (const b of [...packs[0]!, ...packs[2]!, ...fourth]) expect(s.has(b.hash)).toBe(true)
    expect(s.stats().bytes).toBeLessThanOrEqual(capBytes)
    expect(diskBytes()).toBe(s.stats().bytes)
    expect(packFiles().filter((n) => n.endsWith('.dat'))).toEqual([1, 3, 4].map((id) => packFileName(id, 'dat')))

    // a get counts as a use too, and the times are kept on disk: reopened with room for two
    // packs, the store drops pack 1 (read at t+1000, before pack 4 was written)
    t += 1000
    await s.get(packs[2]![1]!.hash)
    await closeStore(s)
    s = await openStore({ packBytes: PACK_OF_4, capBytes: 2 * PACK_OF_4_DISK, now })
    for (const b of packs[0]!) expect(s.has(b.hash)).toBe(false)
    for (const b of [...packs[2]!, ...fourth]) expectBytes(await s.get(b.hash), b.data)
    expect(diskBytes()).toBeLessThanOrEqual(2 * PACK_OF_4_DISK)
  })

  it('never evicts the pack being written, even past the cap', async () => {
    const s = await openStore({ packBytes: 1024 * KiB, capBytes: 100 * KiB })
    const blobs = [blob(), blob(), blob()]
    for (const b of blobs) await s.put(b.hash, b.data)
    await s.flush()
    for (const b of blobs) expect(s.has(b.hash)).toBe(true)
    expect(s.stats().packs).toBe(1)
  })

  it('keeps a bounded number of pack files open however many it reads', async () => {
    const s = await openStore({ packBytes: MIN_PACK_BYTES })
    // one blob fills a pack
    const blobs = Array.from({ length: MAX_OPEN_PACKS + 20 }, () => blob(MIN_PACK_BYTES - PACK_HEADER_BYTES))
    for (const b of blobs) await s.put(b.hash, b.data)
    await s.flush()
    expect(s.stats().packs).toBe(blobs.length)
    await Promise.all(blobs.map(async (b) => { expectBytes(await s.get(b.hash), b.data) }))
    for (const b of blobs) expectBytes(await s.get(b.hash), b.data)
    if (process.platform !== 'linux') return // counts descriptors through /proc
    const inStore = (): number => fs.readdirSync('/proc/self/fd').filter((fd) => {
      try { return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir + path.sep) } catch { return false }
    }).length
    // the read handles plus the two write handles of the pack being written; handles past
    // the bound are closed asynchronously
    await waitFor(() => inStore() <= MAX_OPEN_PACKS + 2, `at most ${MAX_OPEN_PACKS + 2} open pack files`)
      .catch(() => { expect(inStore()).toBeLessThanOrEqual(MAX_OPEN_PACKS + 2) })
  })

  it('takes puts and gets from many promises at once', async () => {
    const s = await openStore({ packBytes: 256 * KiB })
    const blobs = Array.from({ length: 60 }, (_, i) => blob(4 * KiB + i * 997))
    const ops: Array<Promise<unknown>> = []
    for (let round = 0; round < 3; round++) {
      for (const b of blobs) {
        ops.push(s.put(b.hash, b.data))
        // put indexes the blob before its first await, so a get right after it always finds it
        ops.push(s.get(b.hash).then((got) => { expectBytes(got, b.data) }))
      }
      ops.push(s.flush())
    }
    await Promise.all(ops)
    expect(s.stats().blobs).toBe(blobs.length)
    const got = await Promise.all(blobs.map(async (b) => await s.get(b.hash)))
    got.forEach((g, i) => { expectBytes(g, blobs[i]!.data) })
    await closeStore(s)
    const again = await openStore({ packBytes: 256 * KiB })
    expect(again.stats().blobs).toBe(blobs.length)
    expect(diskBytes()).toBe(again.stats().bytes)
  })

  it('reports a failed write at flush, forgets its blobs and goes on in a new pack', async () => {
    const log = quietLog()
    const s = await openStore({ log })
    // something in the way of the first pack file
    fs.mkdirSync(path.join(dir, packFileName(1, 'dat')))
    const lost = blob()
    await s.put(lost.hash, lost.data)
    const err = refusal(await s.flush().catch((e) => e))
    expect(err.code).toBe('ERR_INTERNAL')
    expect(err.message).toContain(dir)
    expect(s.has(lost.hash)).toBe(false)
    expect(s.stats()).toMatchObject({ blobs: 0, packs: 0, bytes: 0 })
    await s.flush() // reported once

    const kept = blob()
    await s.put(kept.hash, kept.data)
    await s.flush()
    expectBytes(await s.get(kept.hash), kept.data)
    expect(fs.existsSync(path.join(dir, packFileName(2, 'dat')))).toBe(true)
    expect(s.stats()).toMatchObject({ blobs: 1, packs: 1 })
    // the thing in the way costs that pack only, also at the next open
    await closeStore(s)
    const again = await openStore({ log })
    expectBytes(await again.get(kept.hash), kept.data)
  })

  it('refuses to put or get once closed', async () => {
    const s = await openStore()
    await closeStore(s)
    expect(refusal(await s.get(new Uint8Array(32)).catch((e) => e)).message).toContain('closed')
  })

  describe('lock', () => {
    it('refuses a second open in the same process until the first is closed', async () => {
      const s = await openStore()
      const err = refusal(await ChunkStore.open(dir).catch((e) => e))
      expect(err.message).toContain('already open in this process')
      await closeStore(s)
      expect(fs.existsSync(path.join(dir, STORE_LOCK_FILE))).toBe(false)
      await openStore()
    })

    it('refuses a store that another live process holds', async () => {
      const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
      try {
        fs.writeFileSync(path.join(dir, STORE_LOCK_FILE), `${child.pid}\n`)
        const err = refusal(await ChunkStore.open(dir).catch((e) => e))
        expect(err.message).toContain(`in use by process ${child.pid}`)
        expect(err.hint).toContain(STORE_LOCK_FILE)
        expect(fs.readFileSync(path.join(dir, STORE_LOCK_FILE), 'utf8')).toBe(`${child.pid}\n`)
      } finally {
        child.kill('SIGKILL')
      }
    })

    it('takes over a lock left by a dead process, or by an earlier life of this pid', async () => {
      const lockFile = path.join(dir, STORE_LOCK_FILE)
      fs.writeFileSync(lockFile, `${await exitedPid()}\n`)
      let s = await openStore()
      expect(fs.readFileSync(lockFile, 'utf8')).toBe(`${process.pid}\n`)
      await closeStore(s)

      fs.writeFileSync(lockFile, `${process.pid}\n`)
      s = await openStore()
      await closeStore(s)
      fs.writeFileSync(lockFile, 'garbage')
      await openStore()
    })
  })
})
