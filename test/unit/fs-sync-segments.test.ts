/**
 * A big file cut in segments by several threads gives the very chunks of one cut from the
 * start: checked against chunkFileSync on random bytes, with segments starting anywhere, and
 * through the built worker pool on a file big enough to be split. Bytes with no content cuts
 * (zeros: every cut is a max-size one) cannot be joined, and the pool then cuts in one piece.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { randomFillSync } from 'node:crypto'
import { chunkFileSync } from '../../src/fs-sync/fastcdc.js'
import { chunkRangeSync } from '../../src/fs-sync/chunk-file.js'
import { joinSegments, segmentStarts, SEGMENT_MIN_BYTES, SEGMENT_OVERLAP_BYTES, type Segment } from '../../src/fs-sync/segments.js'
import type { WorkerPool } from '../../src/fs-sync/scan-workers.js'
import type { ChunkRef } from '../../src/fs-sync/types.js'

const MiB = 1024 * 1024
let dir: string
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-segments-')) })
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }) })

function randomFile (name: string, bytes: number): string {
  const p = path.join(dir, name)
  const buf = Buffer.alloc(bytes)
  randomFillSync(buf)
  fs.writeFileSync(p, buf)
  return p
}

const plain = (refs: ChunkRef[]): Array<[string, number]> => refs.map((r) => [Buffer.from(r.hash).toString('hex'), r.size])

function cutInSegments (file: string, starts: number[]): ChunkRef[] | undefined {
  const segs: Segment[] = starts.map((from, i) => {
    const limit = i + 1 < starts.length ? starts[i + 1]! + SEGMENT_OVERLAP_BYTES : Infinity
    return { from, limit, ...chunkRangeSync(file, from, limit) }
  })
  return joinSegments(segs)
}

describe('a file cut in segments', () => {
  it('gives the chunks of one cut, wherever the segments start', () => {
    const file = randomFile('random.bin', 9 * MiB + 12345)
    const whole = plain(chunkFileSync(file))
    expect(whole.length).toBeGreaterThan(50)
    for (const starts of [[0, 3 * MiB], [0, 3 * MiB + 1, 6 * MiB + 777], [0, 1, 2], [0, 9 * MiB]]) {
      expect(plain(cutInSegments(file, starts)!)).toEqual(whole)
    }
  })

  it('cannot be joined where the bytes make no cuts of their own, and says so', () => {
    const file = path.join(dir, 'zeros.bin')
    fs.writeFileSync(file, Buffer.alloc(6 * MiB))
    expect(cutInSegments(file, [0, 3 * MiB + 1000])).toBeUndefined()
  })

  it('is split only when each segment would hold SEGMENT_MIN_BYTES', () => {
    expect(segmentStarts(SEGMENT_MIN_BYTES * 2 - 1, 4)).toEqual([0])
    expect(segmentStarts(300e6, 1)).toEqual([0])
    expect(segmentStarts(300e6, 2)).toEqual([0, 150e6])
    expect(segmentStarts(300e6, 16)).toHaveLength(Math.floor(300e6 / SEGMENT_MIN_BYTES))
  })

  /** The built worker pool of `size` threads (a worker cannot load sources), closed after `use`. */
  async function withBuiltPool (size: number, use: (pool: WorkerPool) => Promise<void>): Promise<void> {
    const built = new URL('../../dist/src/fs-sync/scan-workers.js', import.meta.url).href
    const { WorkerPool: Pool } = await import(built) as { WorkerPool: typeof WorkerPool }
    const pool = new Pool(size)
    try {
      await use(pool)
    } finally {
      await pool.close()
    }
  }

  it('is cut by the built worker pool as one cut would, split or not', async () => {
    await withBuiltPool(3, async (pool) => {
      const file = randomFile('big.bin', 2 * SEGMENT_MIN_BYTES + 5 * MiB)
      expect(plain(await pool.chunk(file, fs.statSync(file).size))).toEqual(plain(chunkFileSync(file)))
      const zeros = path.join(dir, 'big-zeros.bin')
      fs.writeFileSync(zeros, Buffer.alloc(2 * SEGMENT_MIN_BYTES))
      expect(plain(await pool.chunk(zeros, 2 * SEGMENT_MIN_BYTES))).toEqual(plain(chunkFileSync(zeros)))
    })
  }, 60_000)

  it('cancels the jobs of an aborted caller, queued or running, and goes on serving the others', async () => {
    await withBuiltPool(1, async (pool) => {
      const file = randomFile('cancel.bin', 2 * SEGMENT_MIN_BYTES + 3 * MiB)
      const size = fs.statSync(file).size
      const stop = new AbortController()
      // one thread: the first job runs, the second waits behind it
      const running = pool.chunk(file, size, stop.signal)
      const queued = pool.chunk(file, size, stop.signal)
      const other = pool.chunk(file, size)
      stop.abort(new Error('the user pressed Ctrl-C'))
      await expect(running).rejects.toThrow('the user pressed Ctrl-C')
      await expect(queued).rejects.toThrow('the user pressed Ctrl-C')
      expect(plain(await other)).toEqual(plain(chunkFileSync(file)))
      expect(pool.isClosed).toBe(false)
      // already aborted: refused at once
      await expect(pool.chunk(file, size, stop.signal)).rejects.toThrow('the user pressed Ctrl-C')
    })
  }, 60_000)
})
