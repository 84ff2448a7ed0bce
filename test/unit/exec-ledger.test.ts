import { describe, expect, it } from 'vitest'
import { VgridError } from '../../src/common/errors.js'
import { Ledger } from '../../src/exec/index.js'

const GiB = 1024 ** 3
const gpu = (index: number, model = 'NVIDIA A100-SXM4-80GB'): { index: number, vendor: string, model: string, memoryBytes: number } =>
  ({ index, vendor: 'NVIDIA', model, memoryBytes: 80 * GiB })

function refusal (fn: () => unknown): VgridError {
  try {
    fn()
  } catch (err) {
    return err as VgridError
  }
  throw new Error('expected a refusal')
}

describe('Ledger', () => {
  it('refuses an over-reservation saying what is short', () => {
    const ledger = new Ledger({ cpus: 8, memBytes: 16 * GiB, gpus: [gpu(0), gpu(1)] })
    ledger.reserve({ cpus: 2, gpus: 1 })
    const err = refusal(() => ledger.reserve({ cpus: 2, gpus: 2 }))
    expect(err).toBeInstanceOf(VgridError)
    expect(err.code).toBe('ERR_NO_CAPACITY')
    expect(err.message).toContain('needs 2 GPUs, 1 free')
    expect(err.message).not.toContain('core')

    const both = refusal(() => ledger.reserve({ cpus: 7, memBytes: 32 * GiB, gpus: 0 }))
    expect(both.message).toContain('needs 7 cores, 6 free of 8 lent')
    expect(both.message).toContain('needs 32.0 GiB of memory, 16.0 GiB free')
    // Nothing was taken by the refused claims.
    expect(ledger.snapshot()).toEqual({ cpusFree: 6, memFree: 16 * GiB, gpusFree: [1], running: 1 })
  })

  it('gives GPUs whole and exclusively: 20 concurrent claims for 2 GPUs, exactly 2 win', async () => {
    const ledger = new Ledger({ cpus: 64, memBytes: 64 * GiB, gpus: [gpu(1), gpu(0)] })
    const outcomes = await Promise.allSettled(Array.from({ length: 20 }, async () => {
      await Promise.resolve()
      return ledger.reserve({ cpus: 1, gpus: 1 })
    }))
    const won = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []))
    expect(won).toHaveLength(2)
    expect(won.map((r) => r.gpus[0]?.index)).toEqual([0, 1]) // lowest free index first
    for (const o of outcomes) if (o.status === 'rejected') expect((o.reason as VgridError).code).toBe('ERR_NO_CAPACITY')
    expect(ledger.snapshot().gpusFree).toEqual([])
  })

  it('returns capacity on release, and a second release does nothing', () => {
    const ledger = new Ledger({ cpus: 4, memBytes: 8 * GiB, gpus: [gpu(0), gpu(1), gpu(2)] })
    const a = ledger.reserve({ cpus: 4, memBytes: 8 * GiB, gpus: 2 })
    expect(a.gpus.map((g) => g.index)).toEqual([0, 1])
    expect(ledger.snapshot()).toEqual({ cpusFree: 0, memFree: 0, gpusFree: [2], running: 1 })
    expect(() => ledger.reserve({ cpus: 1, gpus: 0 })).toThrow(/needs 1 core, 0 free/)
    expect(ledger.release(a)).toBe(true)
    expect(ledger.release(a)).toBe(false)
    expect(ledger.release(a.id)).toBe(false)
    expect(ledger.snapshot()).toEqual({ cpusFree: 4, memFree: 8 * GiB, gpusFree: [0, 1, 2], running: 0 })
    expect(ledger.reserve({ cpus: 4, gpus: 3 }).gpus).toHaveLength(3)
  })

  it('allows cpus 0, which counts against no core', () => {
    const ledger = new Ledger({ cpus: 1, memBytes: GiB, gpus: [] })
    ledger.reserve({ cpus: 1, gpus: 0 })
    const r = ledger.reserve({ cpus: 0, gpus: 0 })
    expect(r.cpus).toBe(0)
    expect(ledger.snapshot()).toMatchObject({ cpusFree: 0, running: 2 })
  })

  it('filters GPUs by model, case-insensitively, and says so when refusing', () => {
    const ledger = new Ledger({ cpus: 8, memBytes: GiB, gpus: [gpu(0, 'NVIDIA GeForce RTX 4090'), gpu(1), gpu(2)] })
    const r = ledger.reserve({ cpus: 1, gpus: 1, gpuModel: 'a100' })
    expect(r.gpus.map((g) => g.index)).toEqual([1])
    expect(ledger.reserve({ cpus: 1, gpus: 1, gpuModel: 'RTX' }).gpus[0]?.index).toBe(0)
    expect(() => ledger.reserve({ cpus: 1, gpus: 2, gpuModel: 'A100' })).toThrow('needs 2 GPUs matching "A100", 1 free of 2 lent')
    expect(ledger.fitsEver({ cpus: 1, gpus: 2, gpuModel: 'a100' })).toBe(true)
    expect(ledger.fitsEver({ cpus: 1, gpus: 1, gpuModel: 'h100' })).toBe(false)
  })

  it('knows what could never fit', () => {
    const ledger = new Ledger({ cpus: 8, memBytes: 16 * GiB, gpus: [gpu(0)] })
    ledger.reserve({ cpus: 8, gpus: 1 })
    expect(ledger.fitsEver({ cpus: 8, memBytes: 16 * GiB, gpus: 1 })).toBe(true)
    expect(ledger.fitsEver({ cpus: 9, gpus: 0 })).toBe(false)
    expect(ledger.fitsEver({ cpus: 1, memBytes: 17 * GiB, gpus: 0 })).toBe(false)
    expect(ledger.fitsEver({ cpus: 1, gpus: 2 })).toBe(false)
  })

  it('keeps running reservations across an offer change', () => {
    const ledger = new Ledger({ cpus: 8, memBytes: 16 * GiB, gpus: [gpu(0), gpu(1)] })
    const r = ledger.reserve({ cpus: 6, gpus: 1 })
    ledger.update({ cpus: 4, memBytes: 16 * GiB, gpus: [gpu(1)] })
    expect(ledger.snapshot()).toEqual({ cpusFree: 0, memFree: 16 * GiB, gpusFree: [1], running: 1 })
    ledger.release(r)
    // GPU 0 is no longer lent, so it does not come back.
    expect(ledger.snapshot()).toEqual({ cpusFree: 4, memFree: 16 * GiB, gpusFree: [1], running: 0 })
  })

  it('rejects nonsense requests and offers', () => {
    const ledger = new Ledger({ cpus: 8, memBytes: GiB, gpus: [] })
    expect(() => ledger.reserve({ cpus: -1, gpus: 0 })).toThrow(/cpus must be/)
    expect(() => ledger.reserve({ cpus: 1, gpus: 0.5 })).toThrow(/gpus must be a whole number/)
    expect(() => ledger.reserve({ cpus: Number.NaN, gpus: 0 })).toThrow(VgridError)
    expect(() => new Ledger({ cpus: 1, memBytes: 0, gpus: [gpu(0), gpu(0)] })).toThrow(/lent twice/)
  })
})
