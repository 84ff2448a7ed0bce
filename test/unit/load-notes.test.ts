/**
 * A submitter's own knowledge of a member's room between its advertisements (issue 19): the
 * claims it won there and the ends of its commands there, dropped at the member's next word.
 */
import { describe, it, expect } from 'vitest'
import { LoadNotes } from '../../src/agent/run/load-notes.js'
import { Refusals } from '../../src/agent/claim.js'
import { candidates } from '../../src/grid/placement.js'
import type { PeerView } from '../../src/grid/types.js'

function member (o: { seq?: number, free?: number, self?: boolean, startedAt?: number } = {}): PeerView {
  return {
    v: 1, peer: o.self === true ? '12D3KooWSELF0000' : '12D3KooWBOX11111', seq: o.seq ?? 1, startedAt: o.startedAt ?? 1, addrs: [], version: '0.1.0',
    resources: { host: 'box', os: { platform: 'linux', distro: 'd', release: 'r', arch: 'x64' }, cpu: { model: 'c', cores: 2 }, memBytes: 2 ** 34, gpus: [] },
    offer: { cpus: 2, memBytes: 2 ** 34, gpus: [], pools: [], labels: {} },
    load: { cpusFree: o.free ?? 2, memFree: 2 ** 34, gpusFree: [], running: 2 - (o.free ?? 2), queued: 0, cpuUtil: 0 },
    lastSeenMs: 0, self: o.self ?? false
  }
}

const core = { cpus: 1, memBytes: 2 ** 30 }

describe('load notes', () => {
  it('shows a member full once this agent has claimed its cores, before it advertises so', () => {
    const notes = new LoadNotes()
    const ad = member({ free: 2 })
    notes.taken(ad, core)
    notes.taken(ad, core)
    const [seen] = notes.adjust([ad])
    expect(seen!.load.cpusFree).toBe(0)
    expect(seen!.load.memFree).toBe(2 ** 34 - 2 ** 31)
    expect(seen!.load.running).toBe(2)
    expect(() => candidates([seen!], { cpus: 1, gpus: 0 })).toThrow(/busy|room|free/)
  })

  it('shows the room of a command that ended there free again, and says so to whoever waits', () => {
    const notes = new LoadNotes()
    let woken = 0
    const stop = notes.onFreed(() => { woken++ })
    const full = member({ free: 0, seq: 7 })
    notes.freed(full, core)
    expect(woken).toBe(1)
    expect(notes.adjust([full])[0]!.load.cpusFree).toBe(1)
    expect(candidates(notes.adjust([full]), { cpus: 1, gpus: 0 })).toHaveLength(1)
    stop()
    notes.freed(full, core)
    expect(woken).toBe(1)
  })

  it('takes a claim and its end within one advertisement as nothing', () => {
    const notes = new LoadNotes()
    const ad = member({ free: 1 })
    notes.taken(ad, core)
    notes.freed(ad, core)
    expect(notes.adjust([ad])[0]).toEqual(ad)
  })

  it('drops its notes when the member advertises again, or restarted', () => {
    const notes = new LoadNotes()
    notes.taken(member({ seq: 3 }), core)
    const newer = member({ seq: 4, free: 2 })
    expect(notes.adjust([newer])[0]).toBe(newer)
    // dropped, not only skipped: the older advertisement is not adjusted either now
    expect(notes.adjust([member({ seq: 3 })])[0]!.load.cpusFree).toBe(2)
    notes.taken(member({ seq: 3 }), core)
    const restarted = member({ seq: 3, startedAt: 2 })
    expect(notes.adjust([restarted])[0]).toBe(restarted)
  })

  it('never shows more than a member lends, or less than nothing', () => {
    const notes = new LoadNotes()
    const ad = member({ free: 2 })
    notes.freed(ad, core)
    expect(notes.adjust([ad])[0]!.load.cpusFree).toBe(2)
    const empty = member({ free: 0, seq: 2 })
    notes.taken(empty, core)
    expect(notes.adjust([empty])[0]!.load.cpusFree).toBe(0)
  })

  it('leaves this agent itself alone: its own ledger is read first-hand', () => {
    const notes = new LoadNotes()
    const self = member({ self: true, free: 1 })
    notes.taken(self, core)
    expect(notes.adjust([self])[0]).toBe(self)
  })
})

describe('refusals', () => {
  it('asks a member that refused again once room was freed there, whatever it refused', () => {
    const r = new Refusals()
    const ad = member({ seq: 5 })
    r.note('one core', ad)
    r.note('two cores', ad)
    expect(r.stale('one core', ad)).toBe(true)
    expect(r.stale('one core', member({ seq: 6 }))).toBe(false)
    r.forget(ad.peer)
    expect(r.stale('one core', ad)).toBe(false)
    expect(r.stale('two cores', ad)).toBe(false)
  })
})
