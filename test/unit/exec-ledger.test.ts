import { describe, expect, it } from 'vitest'
import { VgridError } from '../../src/common/errors.js'
import { Ledger, parseRunSpec } from '../../src/exec/index.js'

const GiB = 1024 ** 3
const gpu = (index: number, model = 'NVIDIA A100-SXM4-80GB', memGiB = 80): { index: number, vendor: string, model: string, memoryBytes: number } =>
  ({ index, vendor: 'NVIDIA', model, memoryBytes: memGiB * GiB })

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

  it('tells whoever waits for room of each release, once, and of nothing else', () => {
    const ledger = new Ledger({ cpus: 2, memBytes: 8 * GiB, gpus: [] })
    let told = 0
    const stop = ledger.onRelease(() => { told++ })
    const a = ledger.reserve({ cpus: 1, gpus: 0 })
    expect(told).toBe(0)
    ledger.release(a)
    ledger.release(a)
    expect(told).toBe(1)
    stop()
    ledger.release(ledger.reserve({ cpus: 1, gpus: 0 }))
    expect(told).toBe(1)
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

describe('Ledger: GPU memory, pools and labels', () => {
  it('gives only GPUs with at least the memory asked for, lowest free index first', () => {
    const ledger = new Ledger({ cpus: 8, memBytes: 64 * GiB, gpus: [gpu(0, 'NVIDIA GeForce RTX 4090', 24), gpu(1, 'NVIDIA A100-SXM4-40GB', 40), gpu(2), gpu(3)] })
    expect(ledger.reserve({ cpus: 1, gpus: 1, gpuMemBytes: 32 * GiB }).gpus.map((g) => g.index)).toEqual([1])
    expect(ledger.reserve({ cpus: 1, gpus: 2, gpuMemBytes: 80 * GiB }).gpus.map((g) => g.index)).toEqual([2, 3])
    expect(() => ledger.reserve({ cpus: 1, gpus: 1, gpuMemBytes: 40 * GiB })).toThrow('needs 1 GPU with at least 40.0 GiB, 0 free of 3 lent')
    expect(() => ledger.reserve({ cpus: 1, gpus: 1, gpuModel: 'a100', gpuMemBytes: 80 * GiB })).toThrow('needs 1 GPU matching "a100" with at least 80.0 GiB, 0 free of 2 lent')
    expect(ledger.reserve({ cpus: 1, gpus: 1, gpuMemBytes: 24 * GiB }).gpus.map((g) => g.index)).toEqual([0])
    expect(ledger.fitsEver({ cpus: 1, gpus: 3, gpuMemBytes: 40 * GiB })).toBe(true)
    expect(ledger.fitsEver({ cpus: 1, gpus: 4, gpuMemBytes: 40 * GiB })).toBe(false)
    expect(() => ledger.reserve({ cpus: 1, gpus: 0, gpuMemBytes: -1 })).toThrow(/gpuMemBytes must be/)
  })

  it('refuses a request for a pool or labels this machine does not have, whatever the submitter\'s view said', () => {
    const ledger = new Ledger({ cpus: 8, memBytes: GiB, gpus: [gpu(0)], pools: ['lab', 'ml'], labels: { room: 'b12', os: 'linux' } })
    expect(ledger.reserve({ cpus: 1, gpus: 0, pool: 'ml', labels: { room: 'b12' } }).cpus).toBe(1)
    expect(ledger.reserve({ cpus: 1, gpus: 1, labels: { room: 'b12', os: 'linux' } }).gpus).toHaveLength(1)
    const pool = refusal(() => ledger.reserve({ cpus: 1, gpus: 0, pool: 'other' }))
    expect(pool.code).toBe('ERR_NO_CAPACITY')
    expect(pool.message).toBe('not for this member: it is not in pool "other" (its pools: lab, ml)')
    expect(refusal(() => ledger.reserve({ cpus: 1, gpus: 0, labels: { room: 'b12', os: 'mac', gpu: 'yes' } })).message)
      .toBe('not for this member: it is not labelled os=mac, gpu=yes')
    expect(refusal(() => ledger.reserve({ cpus: 1, gpus: 0, labels: { toString: 'x' } })).message).toContain('not labelled toString=x')
    expect(ledger.fitsEver({ cpus: 1, gpus: 0, pool: 'lab' })).toBe(true)
    expect(ledger.fitsEver({ cpus: 1, gpus: 0, pool: 'other' })).toBe(false)
    // Refusals took nothing.
    expect(ledger.snapshot()).toMatchObject({ cpusFree: 6, running: 2 })

    const plain = new Ledger({ cpus: 1, memBytes: GiB, gpus: [] })
    expect(refusal(() => plain.reserve({ cpus: 1, gpus: 0, pool: 'lab' })).message).toContain('(it is in no pool)')
    expect(plain.reserve({ cpus: 1, gpus: 0, labels: {} }).cpus).toBe(1)
  })

  it('follows an offer change of pools and labels', () => {
    const ledger = new Ledger({ cpus: 8, memBytes: GiB, gpus: [], pools: ['lab'] })
    ledger.update({ cpus: 8, memBytes: GiB, gpus: [], pools: [], labels: { room: 'b12' } })
    expect(() => ledger.reserve({ cpus: 1, gpus: 0, pool: 'lab' })).toThrow(/not in pool "lab"/)
    expect(ledger.reserve({ cpus: 1, gpus: 0, labels: { room: 'b12' } }).cpus).toBe(1)
  })
})

describe('parseRunSpec: the resource fields a peer sends', () => {
  const base = { argv: ['true'], env: {}, cpus: 1, gpus: 1 }

  it('keeps valid memory, GPU memory, labels and pool', () => {
    const spec = parseRunSpec({ ...base, memBytes: 16 * GiB, gpuMemBytes: 40 * GiB, labels: { room: 'b12', 'gpu.arch/x': 'sm_90' }, pool: 'lab' })
    expect(spec).toEqual({ ...base, memBytes: 16 * GiB, gpuMemBytes: 40 * GiB, labels: { room: 'b12', 'gpu.arch/x': 'sm_90' }, pool: 'lab' })
    expect(parseRunSpec({ ...base, labels: {}, memBytes: null, pool: null })).toEqual(base)
  })

  it.each([
    [{ memBytes: -1 }, 'memBytes is not an integer'],
    [{ memBytes: 2 ** 53 }, 'memBytes is not an integer'],
    [{ memBytes: 1.5 }, 'memBytes is not an integer'],
    [{ memBytes: '16G' }, 'memBytes is not an integer'],
    [{ gpuMemBytes: Number.POSITIVE_INFINITY }, 'gpuMemBytes is not an integer'],
    [{ labels: ['a=b'] }, 'labels is not a map'],
    [{ labels: { a: 1 } }, 'labels.a is not a string'],
    [{ labels: { a: 'x'.repeat(257) } }, 'labels.a is longer than 256'],
    [{ labels: { 'bad key': 'x' } }, 'labels has a key that is not a label key'],
    [{ labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }, 'labels has more than 64 entries'],
    [{ pool: 7 }, 'pool is not a string'],
    [{ pool: 'x'.repeat(64) }, 'pool is longer than 63'],
    [{ pool: 'Lab' }, 'pool is not a pool name'],
    [{ pool: '../etc' }, 'pool is not a pool name']
  ])('refuses %j', (extra, message) => {
    let err: VgridError | undefined
    try { parseRunSpec({ ...base, ...extra }) } catch (e) { err = e as VgridError }
    expect(err?.code).toBe('ERR_BAD_MESSAGE')
    expect(err?.message).toContain(message)
  })
})
