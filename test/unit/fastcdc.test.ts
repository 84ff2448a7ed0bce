import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { appendFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import {
  chunkBuffer, chunkFile, chunkFileSync, DEFAULT_CDC, lastFingerprint, nextCut, type CdcEngine, type CdcParams
} from '../../src/fs-sync/fastcdc.js'
import { cdcConfig } from '../../src/fs-sync/gear.js'
import { CDC_BLOCK_BYTES, openWindow } from '../../src/fs-sync/cut-window.js'
import { wasmAvailable } from '../../src/fs-sync/cut-wasm.js'
import { CHUNK_MAX_BYTES, CHUNK_MIN_BYTES } from '../../src/fs-sync/types.js'
import { oracleChunks } from '../helpers/fastcdc-oracle.js'
import { noise } from '../helpers/noise.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const FIXTURES = join(ROOT, 'test/fixtures/fastcdc2020')
const ENGINES: CdcEngine[] = ['wasm', 'js']

interface Line { offset: number, length: number, sha256: string, fingerprint: bigint }

/** The published vectors: `# Seed: N` headers, then offset, length, sha256, fingerprint. */
function readVectors (): Map<number, Line[]> {
  const bySeed = new Map<number, Line[]>()
  let lines: Line[] | undefined
  for (const raw of readFileSync(join(FIXTURES, 'fastcdc2020_test_vectors.txt'), 'utf8').split('\n')) {
    const seed = /^# Seed: (\d+)/.exec(raw)
    if (seed !== null) bySeed.set(Number(seed[1]), lines = [])
    if (raw.startsWith('#') || raw.trim() === '') continue
    const [offset, length, sha256, fp] = raw.trim().split(/\s+/)
    lines?.push({ offset: Number(offset), length: Number(length), sha256, fingerprint: BigInt(fp) })
  }
  return bySeed
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** Drives an engine's window by hand, to see its fingerprints as well as its cuts. */
function windowChunks (data: Uint8Array, p: CdcParams, engine: CdcEngine): Line[] {
  const cfg = cdcConfig(p)
  const win = openWindow(cfg, data.length + 16, engine)
  try {
    win.buf.set(data)
    const out: Line[] = []
    for (let start = 0; start < data.length;) {
      const n = Math.min(data.length - start, cfg.max)
      const length = n <= cfg.min ? n : win.cut(start, n)
      const fingerprint = n <= cfg.min ? 0n : win.fingerprint()
      out.push({ offset: start, length, sha256: sha(data.subarray(start, start + length)), fingerprint })
      start += length
    }
    return out
  } finally {
    win.release()
  }
}

function nextCutChunks (data: Uint8Array, p: CdcParams): Line[] {
  const out: Line[] = []
  for (let start = 0; start < data.length;) {
    const end = nextCut(data, start, data.length, true, p)
    out.push({ offset: start, length: end - start, sha256: sha(data.subarray(start, end)), fingerprint: lastFingerprint() })
    start = end
  }
  return out
}

const dir = mkdtempSync(join(tmpdir(), 'vgrid-fastcdc-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
function tempFile (data: Uint8Array): string {
  const path = join(dir, `f${files++}`)
  writeFileSync(path, data)
  return path
}

describe('FastCDC 2020 test vectors (REAPI, fastcdc-rs)', () => {
  const image = new Uint8Array(readFileSync(join(FIXTURES, 'SekienAkashita.jpg')))
  const vectors = readVectors()

  it('reads the fixture the vectors were made from', () => {
    expect(image.length).toBe(109466)
    expect(sha(image)).toBe('d9e749d9367fc908876749d6502eb212fee88c9a94892fb07da5ef3ba8bc39ed')
    expect([...vectors.keys()]).toEqual([0, 666])
    expect(vectors.get(0)).toHaveLength(6)
    expect(vectors.get(666)).toHaveLength(6)
  })

  it('derives GEAR from MD5 of 64 equal bytes, as fastcdc-rs does', () => {
    const cfg = cdcConfig({ min: 4096, avg: 16384, max: 65535 })
    const gear = (i: number): string => ((cfg.gearHi[i] >>> 0).toString(16).padStart(8, '0') + (cfg.gearLo[i] >>> 0).toString(16).padStart(8, '0'))
    expect(gear(0)).toBe('3b5d3c7d207e37dc')
    expect(gear(1)).toBe('784d68ba91123086')
    expect(gear(255)).toBe('aabd2b2a451504e1')
  })

  for (const seed of [0, 666]) {
    const p: CdcParams = { min: 4096, avg: 16384, max: 65535, seed }
    it(`seed ${seed}: nextCut (JS) reproduces every line`, () => {
      expect(nextCutChunks(image, p)).toEqual(vectors.get(seed))
    })
    for (const engine of ENGINES) {
      it(`seed ${seed}: the ${engine} window reproduces every line`, () => {
        expect(windowChunks(image, p, engine)).toEqual(vectors.get(seed))
      })
      it(`seed ${seed}: chunkBuffer and chunkFile (${engine}) give the vectors' chunks`, async () => {
        const want = vectors.get(seed)?.map((l) => ({ offset: l.offset, length: l.length }))
        expect(chunkBuffer(image, p, engine)).toEqual(want)
        const path = join(FIXTURES, 'SekienAkashita.jpg')
        const refs = await chunkFile(path, p, { engine })
        expect(refs.map((r) => [r.size, hex(r.hash)])).toEqual(vectors.get(seed)?.map((l) => [l.length, l.sha256]))
        expect(chunkFileSync(path, p, { engine })).toEqual(refs)
      })
    }
  }

  it('runs the WASM engine here (else the figures in the notes do not apply)', () => {
    expect(wasmAvailable()).toBe(true)
  })
})

describe('agreement with a transliteration of fastcdc-rs', () => {
  // Random data, runs of zeros (max-size cuts), a short period (no cut until max), odd sizes.
  const mixed = noise(1_200_000, 1)
  mixed.fill(0, 300_000, 700_000)
  for (let i = 900_000; i < 1_000_000; i++) mixed[i] = i % 7
  const cases: Array<[string, CdcParams, Uint8Array]> = [
    ['default params, seed 0', DEFAULT_CDC, mixed],
    ['default params, 40-bit seed', { ...DEFAULT_CDC, seed: 2 ** 40 + 12345 }, mixed],
    ['odd min and max', { min: 5001, avg: 8192, max: 30001 }, mixed.subarray(0, 400_001)],
    ['smallest params', { min: 64, avg: 256, max: 1024 }, noise(60_000, 2)],
    ['min = avg', { min: 4096, avg: 4096, max: 16384, seed: 7 }, noise(200_000, 3)]
  ]
  for (const [name, p, data] of cases) {
    it(name, () => {
      const want = oracleChunks(data, p.min, p.avg, p.max, BigInt(p.seed ?? 0))
        .map((c) => ({ offset: c.offset, length: c.length, fingerprint: c.hash }))
      const strip = (l: Line): object => ({ offset: l.offset, length: l.length, fingerprint: l.fingerprint })
      expect(nextCutChunks(data, p).map(strip)).toEqual(want)
      for (const engine of ENGINES) {
        expect(windowChunks(data, p, engine).map(strip)).toEqual(want)
        expect(chunkBuffer(data, p, engine)).toEqual(want.map((c) => ({ offset: c.offset, length: c.length })))
      }
    })
  }
})

describe('nextCut', () => {
  it('asks for more data until a boundary is certain, and feeding more never moves a boundary', () => {
    const data = noise(3 << 20, 4)
    const whole = chunkBuffer(data).map((c) => c.offset + c.length)
    const got: number[] = []
    // bytes arrive in ragged pieces, as from a socket
    let start = 0
    let end = 0
    while (start < data.length) {
      const cut = nextCut(data, start, end, end === data.length)
      if (cut === -1) {
        expect(end - start).toBeLessThan(CHUNK_MAX_BYTES)
        end = Math.min(data.length, end + 1 + ((end * 2654435761) >>> 0) % 100_000)
        continue
      }
      got.push(cut)
      start = cut
    }
    expect(got).toEqual(whole)
  })

  it('returns start at the end of input, and -1 for a short tail before it', () => {
    const data = noise(100)
    expect(nextCut(data, 100, 100, true)).toBe(100)
    expect(nextCut(data, 100, 100, false)).toBe(-1)
    expect(nextCut(data, 0, 100, false)).toBe(-1)
    expect(nextCut(data, 0, 100, true)).toBe(100)
  })

  it('refuses bad ranges and bad params with ERR_BAD_ARGUMENT', () => {
    const data = noise(10)
    expect(() => nextCut(data, 5, 4, true)).toThrow(expect.objectContaining({ code: 'ERR_BAD_ARGUMENT' }))
    expect(() => nextCut(data, 0, 11, true)).toThrow(expect.objectContaining({ code: 'ERR_BAD_ARGUMENT' }))
    for (const p of [
      { min: 16384, avg: 65535, max: 262144 }, // avg not a power of two
      { min: 65536, avg: 16384, max: 262144 }, // min > avg
      { min: 32, avg: 256, max: 1024 }, // min too small
      { min: 4096, avg: 16384, max: 65535, seed: -1 }
    ]) expect(() => chunkBuffer(data, p)).toThrow(expect.objectContaining({ code: 'ERR_BAD_ARGUMENT' }))
  })
})

describe('content-defined boundaries', () => {
  it('an inserted byte changes only the chunks around it', () => {
    const data = noise(4 << 20, 5)
    const mid = data.length >> 1
    const edited = new Uint8Array(data.length + 1)
    edited.set(data.subarray(0, mid))
    edited[mid] = 0x5a
    edited.set(data.subarray(mid), mid + 1)
    const hashes = (d: Uint8Array): string[] => chunkBuffer(d).map((c) => sha(d.subarray(c.offset, c.offset + c.length)))
    const before = hashes(data)
    const after = hashes(edited)
    const old = new Set(before)
    const changed = after.filter((h) => !old.has(h))
    expect(before.length).toBeGreaterThan(30)
    expect(changed.length).toBeGreaterThanOrEqual(1)
    expect(changed.length).toBeLessThanOrEqual(2)
    // the same prefix and suffix of chunks on both sides
    let prefix = 0
    while (before[prefix] === after[prefix]) prefix++
    let suffix = 0
    while (before[before.length - 1 - suffix] === after[after.length - 1 - suffix]) suffix++
    expect(before.length - prefix - suffix).toBeLessThanOrEqual(2)
  })

  it('keeps every chunk within [min, max] except the last, and averages near avg', () => {
    const data = noise(8 << 20, 6)
    const chunks = chunkBuffer(data)
    expect(chunks.reduce((s, c) => s + c.length, 0)).toBe(data.length)
    for (const c of chunks.slice(0, -1)) {
      expect(c.length).toBeGreaterThanOrEqual(CHUNK_MIN_BYTES)
      expect(c.length).toBeLessThanOrEqual(CHUNK_MAX_BYTES)
    }
    const mean = data.length / chunks.length
    expect(mean).toBeGreaterThan(48 * 1024)
    expect(mean).toBeLessThan(96 * 1024)
  })

  it('cuts data without boundaries (zeros) at max', () => {
    const chunks = chunkBuffer(new Uint8Array(CHUNK_MAX_BYTES * 3 + 5))
    expect(chunks.map((c) => c.length)).toEqual([CHUNK_MAX_BYTES, CHUNK_MAX_BYTES, CHUNK_MAX_BYTES, 5])
  })
})

describe('chunkFile', () => {
  // Sizes around min, a block (the window refills and moves its tail), and several blocks.
  const sizes = [0, 1, 100, CHUNK_MIN_BYTES, CHUNK_MIN_BYTES + 1, 200_000, CDC_BLOCK_BYTES + 12_345, 3 * CDC_BLOCK_BYTES + 7]
  for (const size of sizes) {
    it(`equals chunkBuffer + SHA-256 for ${size} bytes`, async () => {
      const data = noise(size, 7)
      if (size > 3_000_000) data.fill(0, 1_000_000, 2_000_000) // max-size cuts across a refill
      const path = tempFile(data)
      const want = chunkBuffer(data).map((c) => ({ hash: sha(data.subarray(c.offset, c.offset + c.length)), size: c.length }))
      for (const engine of ENGINES) {
        let seen = 0
        const refs = await chunkFile(path, undefined, { engine, onBytes: (n) => { seen += n } })
        expect(refs.map((r) => ({ hash: hex(r.hash), size: r.size }))).toEqual(want)
        expect(seen).toBe(size)
        expect(chunkFileSync(path, undefined, { engine })).toEqual(refs)
      }
      if (size === 0) expect(want).toEqual([])
      if (size > 0 && size <= CHUNK_MIN_BYTES) expect(want).toHaveLength(1)
    })
  }

  it('cuts what it read when the file grows or shrinks underneath', async () => {
    const data = noise(3 * CDC_BLOCK_BYTES, 8)
    const extra = noise(1 << 20, 9)
    const expectFor = (d: Uint8Array): string[] => chunkBuffer(d).map((c) => `${c.length}:${sha(d.subarray(c.offset, c.offset + c.length))}`)
    const show = (refs: Array<{ size: number, hash: Uint8Array }>): string[] => refs.map((r) => `${r.size}:${hex(r.hash)}`)
    // the first chunk is hashed after the first 4 MiB block is in: change the file then
    const grown = tempFile(data)
    let once = false
    const g = await chunkFile(grown, undefined, { onBytes: () => { if (!once) { once = true; appendFileSync(grown, extra) } } })
    const both = new Uint8Array(data.length + extra.length)
    both.set(data)
    both.set(extra, data.length)
    expect(show(g)).toEqual(expectFor(both))
    const shrunk = tempFile(data)
    once = false
    const keep = CDC_BLOCK_BYTES + 1_000_000
    const s = chunkFileSync(shrunk)
    expect(show(s)).toEqual(expectFor(data))
    const t = await chunkFile(shrunk, undefined, { onBytes: () => { if (!once) { once = true; truncateSync(shrunk, keep) } } })
    expect(show(t)).toEqual(expectFor(data.subarray(0, keep)))
  })

  it('runs concurrent calls on separate buffers', async () => {
    const datas = [noise(5 << 20, 10), noise(3 << 20, 11), noise(6 << 20, 12)]
    const paths = datas.map(tempFile)
    const together = await Promise.all(paths.map(async (p) => await chunkFile(p)))
    expect(together).toEqual(paths.map((p) => chunkFileSync(p)))
  })

  it('lets the event loop run between blocks', async () => {
    const path = tempFile(noise(4 * CDC_BLOCK_BYTES, 13))
    let ticks = 0
    let running = true
    const tick = (): void => { ticks++; if (running) setImmediate(tick) }
    setImmediate(tick)
    await chunkFile(path)
    running = false
    expect(ticks).toBeGreaterThanOrEqual(4)
  })

  it('returns hashes as plain 32-byte Uint8Arrays', async () => {
    const [ref] = await chunkFile(tempFile(noise(1000)))
    expect(ref.hash.constructor).toBe(Uint8Array)
    expect(ref.hash.byteLength).toBe(32)
  })

  it('stops when aborted', async () => {
    const ac = new AbortController()
    ac.abort()
    await expect(chunkFile(tempFile(noise(1000)), undefined, { signal: ac.signal })).rejects.toThrow()
  })

  it('rejects a missing file with ENOENT', async () => {
    await expect(chunkFile(join(dir, 'missing'))).rejects.toThrow(expect.objectContaining({ code: 'ENOENT' }))
    expect(() => chunkFileSync(join(dir, 'missing'))).toThrow(expect.objectContaining({ code: 'ENOENT' }))
  })
})

describe('the generated WASM', () => {
  it('is what scripts/build-cdc-wasm.mjs produces', () => {
    execFileSync(process.execPath, [join(ROOT, 'scripts/build-cdc-wasm.mjs'), '--check'], { stdio: 'pipe' })
  })
})
