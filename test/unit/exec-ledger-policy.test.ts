/** The owner policy in the ledger: --max-tasks, and closing while the owner is busy. */
import { describe, expect, it } from 'vitest'
import { VgridError } from '../../src/common/errors.js'
import { Ledger } from '../../src/exec/index.js'

function refusal (fn: () => unknown): VgridError {
  try { fn() } catch (err) { return err as VgridError }
  throw new Error('expected a refusal')
}

describe('Ledger policy', () => {
  it('grants at most maxTasks reservations at once, however small', () => {
    const ledger = new Ledger({ cpus: 8, memBytes: 2 ** 30, gpus: [], maxTasks: 2 })
    const one = ledger.reserve({ cpus: 1, gpus: 0 })
    ledger.reserve({ cpus: 0, gpus: 0 })
    expect(ledger.refusal()).toMatch(/runs 2 commands, the most its owner allows at once \(--max-tasks 2\)/)
    const err = refusal(() => ledger.reserve({ cpus: 0, gpus: 0 }))
    expect(err.code).toBe('ERR_NO_CAPACITY')
    expect(err.message).toMatch(/^not taking work now: .*--max-tasks 2/)
    // the snapshot still tells the truth about cores; the advertisement shows the refusal
    expect(ledger.snapshot()).toMatchObject({ cpusFree: 7, running: 2 })
    ledger.release(one)
    expect(ledger.refusal()).toBeUndefined()
    ledger.reserve({ cpus: 1, gpus: 0 })
  })

  it('lowering the limit below what runs stops nothing, it only keeps new work out', () => {
    const ledger = new Ledger({ cpus: 8, memBytes: 0, gpus: [] })
    const held = [1, 2, 3].map(() => ledger.reserve({ cpus: 1, gpus: 0 }))
    ledger.update({ cpus: 2, memBytes: 0, gpus: [], maxTasks: 1 })
    expect(ledger.snapshot().running).toBe(3)
    expect(refusal(() => ledger.reserve({ cpus: 0, gpus: 0 })).code).toBe('ERR_NO_CAPACITY')
    for (const r of held) ledger.release(r)
    ledger.reserve({ cpus: 1, gpus: 0 })
    expect(() => new Ledger({ cpus: 1, memBytes: 0, gpus: [], maxTasks: 1.5 })).toThrow(/whole number/)
  })

  it('takes nothing while closed, saying why, and everything again once open', () => {
    const ledger = new Ledger({ cpus: 4, memBytes: 0, gpus: [], closed: 'its owner is using it (--only-when-idle)' })
    const err = refusal(() => ledger.reserve({ cpus: 1, gpus: 0 }))
    expect(err.code).toBe('ERR_NO_CAPACITY')
    expect(err.message).toBe('not taking work now: its owner is using it (--only-when-idle)')
    expect(ledger.fitsEver({ cpus: 4, gpus: 0 })).toBe(true)
    ledger.update({ cpus: 4, memBytes: 0, gpus: [] })
    expect(ledger.refusal()).toBeUndefined()
    ledger.reserve({ cpus: 4, gpus: 0 })
  })
})
