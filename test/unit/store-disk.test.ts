/** The chunk store's cap follows its disk (issue 16): never past what is free, less a margin. */
import crypto from 'node:crypto'
import { describe, it, expect, afterEach } from 'vitest'
import { ChunkStore, capOnDisk, diskMarginBytes, roomOnDisk, DISK_CHECK_INTERVAL_MS, MIN_DISK_MARGIN_BYTES, MAX_DISK_MARGIN_BYTES, type DiskSpace } from '../../src/fs-sync/store.js'
import { PACK_HEADER_BYTES } from '../../src/fs-sync/pack.js'
import { tempDir, removeTempDirs } from '../helpers/procs.js'

const KiB = 1024
const MiB = 1024 ** 2
const GiB = 1024 ** 3

afterEach(() => { removeTempDirs() })

describe('the store cap on a disk', () => {
  it('keeps a margin of 5% of the disk, at least 1 MiB and at most 1 GiB', () => {
    expect(diskMarginBytes(10 * MiB)).toBe(MIN_DISK_MARGIN_BYTES)
    expect(diskMarginBytes(50 * 1e6)).toBe(2_500_000)
    expect(diskMarginBytes(4 * 1024 * GiB)).toBe(MAX_DISK_MARGIN_BYTES)
  })

  it('is the owner\'s cap, or what the store holds plus what is free less the margin, whichever is less', () => {
    const disk: DiskSpace = { freeBytes: 30 * 1e6, totalBytes: 50 * 1e6 }
    // a 10 GiB default on a 50 MB disk: 30 MB free, 2.5 MB margin, 5 MB held
    expect(capOnDisk(10 * GiB, 5e6, disk)).toBe(32_500_000)
    expect(capOnDisk(20e6, 5e6, disk)).toBe(20e6)
    // a full disk: the store must give back what it holds past the margin
    expect(capOnDisk(10 * GiB, 5e6, { freeBytes: 0, totalBytes: 50e6 })).toBe(2_500_000)
    expect(capOnDisk(10 * GiB, 0, { freeBytes: 0, totalBytes: 50e6 })).toBe(0)
    expect(roomOnDisk(5e6, disk)).toBe(32_500_000)
  })

  it('trims a store whose disk filled up, without a restart', async () => {
    let clock = 1_000_000
    const disk: DiskSpace = { freeBytes: 1 * GiB, totalBytes: 20 * MiB }
    const s = await ChunkStore.open(tempDir('vgrid-store-'), { packBytes: PACK_HEADER_BYTES + 4 * 64 * KiB, now: () => clock, disk: async () => ({ ...disk }) })
    try {
      const put = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) {
          const data = crypto.randomBytes(64 * KiB)
          await s.put(crypto.createHash('sha256').update(data).digest(), data)
          clock += 10
        }
        await s.flush()
      }
      await put(16)
      const held = s.stats().bytes
      expect(s.stats().packs).toBe(4)
      expect(s.room()).toBeGreaterThan(held)
      // Something else fills the disk: nothing free, and the store must give back its margin (1 MiB).
      disk.freeBytes = 0
      clock += DISK_CHECK_INTERVAL_MS
      await put(1)
      expect(s.stats().capBytes).toBeLessThan(held)
      expect(s.stats().bytes).toBeLessThanOrEqual(Math.max(s.stats().capBytes, 0) + 64 * KiB + PACK_HEADER_BYTES + 4096)
      expect(s.stats().packs).toBeLessThanOrEqual(2)
      // Room again: the cap goes back up.
      disk.freeBytes = 1 * GiB
      expect(await s.roomNow()).toBeGreaterThan(1 * GiB - 2 * MiB)
      expect(s.stats().capBytes).toBeGreaterThan(1 * GiB - 2 * MiB)
    } finally {
      await s.close()
    }
  })
})
