/** Where a command goes, from a view: the pure part of placement. */
import { describe, it, expect } from 'vitest'
import { acceptsFrom, candidates, resolvePeer, resolvePinned, formatAgo, MemberAway, fitsEver, fitsNow, freeScore, chooseClaimTargets, gangCapacity, impossibleGang, assignGang } from '../../src/grid/placement.js'
import { accepting, pinnedCandidates } from '../../src/grid/placement.js'
import type { PeerView } from '../../src/grid/types.js'

interface PeerOpts {
  cpus?: number
  free?: number
  gpus?: string[]
  gpusFree?: number[]
  /** MiB of memory per GPU, in order; default 16 GiB each. */
  gpuMem?: number[]
  mem?: number
  memFree?: number
  pools?: string[]
  labels?: Record<string, string>
  self?: boolean
}

function peer (id: string, host: string, opts: PeerOpts = {}): PeerView {
  const gpus = (opts.gpus ?? []).map((model, index) => ({ index, vendor: 'nvidia', model, memoryBytes: opts.gpuMem?.[index] !== undefined ? opts.gpuMem[index] * 2 ** 20 : 2 ** 34 }))
  return {
    v: 1, peer: id, seq: 1, startedAt: 1, addrs: [], version: '0.1.0',
    resources: { host, os: { platform: 'linux', distro: 'd', release: 'r', arch: 'x64' }, cpu: { model: 'c', cores: opts.cpus ?? 4 }, memBytes: opts.mem ?? 2 ** 34, gpus },
    offer: { cpus: opts.cpus ?? 4, memBytes: opts.mem ?? 2 ** 34, gpus: gpus.map((g) => g.index), pools: opts.pools ?? [], labels: opts.labels ?? {} },
    load: { cpusFree: opts.free ?? opts.cpus ?? 4, memFree: opts.memFree ?? opts.mem ?? 2 ** 34, gpusFree: opts.gpusFree ?? gpus.map((g) => g.index), running: 0, queued: 0, cpuUtil: 0 },
    lastSeenMs: 0, self: opts.self ?? false
  }
}

const view = [
  peer('12D3KooWAAAA1111', 'ws1', { self: true, cpus: 2 }),
  peer('12D3KooWBBBB2222', 'ws2', { cpus: 8, free: 6 }),
  peer('12D3KooWBBBC3333', 'gpu1', { cpus: 16, gpus: ['NVIDIA A100-SXM4-80GB', 'NVIDIA A100-SXM4-80GB'], gpusFree: [1] }),
  peer('12D3KooWDDDD4444', 'gpu2', { cpus: 16, free: 0, gpus: ['NVIDIA GeForce RTX 4090'] })
]

describe('placement', () => {
  it('orders members with room by free capacity, the local agent winning ties', () => {
    // A CPU-only request weighs a member with free GPUs less: gpu1 (all cores free) comes last.
    expect(candidates(view, { cpus: 1, gpus: 0 }).map((p) => p.resources.host)).toEqual(['ws1', 'ws2', 'gpu1'])
    // A GPU request counts the free GPUs that match.
    expect(freeScore(view[2], { cpus: 1, gpus: 1 })).toBe(2)
    expect(freeScore(view[2], { cpus: 1, gpus: 1, gpuModel: '4090' })).toBe(1)
    expect(freeScore(view[2], { cpus: 1, gpus: 0 })).toBe(0.25)
    const idle = [peer('12D3KooWX1', 'a', { cpus: 4 }), peer('12D3KooWX2', 'b', { cpus: 4, self: true })]
    expect(candidates(idle, { cpus: 1, gpus: 0 })[0].resources.host).toBe('b')
  })

  it('counts only free GPUs of the wanted model', () => {
    expect(candidates(view, { cpus: 1, gpus: 1, gpuModel: 'a100' }).map((p) => p.resources.host)).toEqual(['gpu1'])
    expect(fitsNow(view[2], { cpus: 1, gpus: 2 })).toBe(false)
    expect(fitsEver(view[2], { cpus: 1, gpus: 2 })).toBe(true)
    expect(() => candidates(view, { cpus: 1, gpus: 2 })).toThrow(expect.objectContaining({ code: 'ERR_NO_CAPACITY' }))
    expect(() => candidates(view, { cpus: 1, gpus: 1, gpuModel: '4090' })).toThrow(expect.objectContaining({ code: 'ERR_NO_CAPACITY' }))
  })

  it('fails at once, naming the largest member, when nothing could ever fit', () => {
    expect(() => candidates(view, { cpus: 1, gpus: 3 })).toThrow(
      'no member of the grid could ever run a command that needs 1 core and 3 GPUs: ' +
      'the largest member, gpu1, lends 16 cores, 16 GiB of memory and 2 GPUs (2× NVIDIA A100-SXM4-80GB with 16 GiB)')
    expect(() => candidates(view, { cpus: 64, gpus: 0 })).toThrow(expect.objectContaining({ code: 'ERR_IMPOSSIBLE_REQUEST' }))
    expect(() => candidates(view, { cpus: 1, gpus: 1, gpuModel: 'h100' })).toThrow(expect.objectContaining({ code: 'ERR_IMPOSSIBLE_REQUEST' }))
    expect(() => candidates([], { cpus: 1, gpus: 0 })).toThrow(/no members/)
  })

  it('skips members that are leaving', () => {
    const leaving = { ...view[2], leaving: true }
    expect(candidates([view[0], leaving], { cpus: 1, gpus: 0 }).map((p) => p.resources.host)).toEqual(['ws1'])
  })

  it('passes paused and draining members by, and says so when only they could run it', () => {
    const paused = { ...view[1]!, load: { ...view[1]!.load, paused: true } }
    const draining = { ...view[2]!, load: { ...view[2]!.load, draining: true } }
    expect(fitsNow(paused, { cpus: 1, gpus: 0 })).toBe(false)
    // still one that could run it once it lends again: the run waits rather than fails
    expect(fitsEver(paused, { cpus: 1, gpus: 0 })).toBe(true)
    expect(candidates([view[0]!, paused, draining, view[3]!], { cpus: 1, gpus: 0 }).map((p) => p.resources.host)).toEqual(['ws1'])
    // a gang placement asks fitsNow too (tasks/manager.ts)
    expect(fitsNow(draining, { cpus: 0, gpus: 0 })).toBe(false)
    expect(() => candidates([paused, draining], { cpus: 4, gpus: 0 })).toThrow(/is paused or draining \(by its owner\)/)
    expect(() => candidates([paused, view[3]!], { cpus: 4, gpus: 0 })).toThrow(/is busy/)
  })

  it('resolves --on by id, hostname, or a unique prefix or suffix', () => {
    expect(resolvePeer(view, '12D3KooWBBBB2222').resources.host).toBe('ws2')
    expect(resolvePeer(view, 'GPU1').peer).toBe('12D3KooWBBBC3333')
    expect(resolvePeer(view, '12D3KooWD').resources.host).toBe('gpu2')
    // the end of an id, as vgrid peers shows it (with or without its mark), or typed
    expect(resolvePeer(view, '…B2222').resources.host).toBe('ws2')
    expect(resolvePeer(view, '...B2222').resources.host).toBe('ws2')
    expect(resolvePeer(view, 'C3333').peer).toBe('12D3KooWBBBC3333')
    expect(() => resolvePeer(view, '…333')).toThrow(expect.objectContaining({ code: 'ERR_NO_SUCH_PEER' }))
    expect(() => resolvePeer(view, '12D3KooWBBB')).toThrow(expect.objectContaining({ code: 'ERR_AMBIGUOUS_PEER' }))
    expect(() => resolvePeer(view, 'nope')).toThrow(expect.objectContaining({ code: 'ERR_NO_SUCH_PEER' }))
    expect(() => resolvePeer(view, '12D')).toThrow(expect.objectContaining({ code: 'ERR_NO_SUCH_PEER' }))
    const twins = [peer('12D3KooWT1', 'same'), peer('12D3KooWT2', 'same')]
    expect(() => resolvePeer(twins, 'same')).toThrow(/2 members have the hostname same/)
  })

  it('says what a member named with --on lacks, not that no member of the grid could run it', () => {
    const ws1 = resolvePeer(view, 'ws1')
    expect(() => pinnedCandidates(ws1, { cpus: 4, gpus: 0 })).toThrow(expect.objectContaining({
      code: 'ERR_IMPOSSIBLE_REQUEST', message: expect.stringMatching(/^ws1 \(…AA1111\) could never run a command that needs 4 cores: it lends 2 cores, /)
    }))
    expect(pinnedCandidates(resolvePeer(view, 'ws2'), { cpus: 4, gpus: 0 })[0]!.resources.host).toBe('ws2')
  })

  it('waits for a member named with --on that left lately, and refuses a name never seen', () => {
    const gone = [{ peer: '12D3KooWGONE9999', host: 'laptop', leftMsAgo: 40_000 }, { peer: '12D3KooWOLD', host: 'ws2', leftMsAgo: 3_600_000 }]
    for (const on of ['laptop', 'LAPTOP', '12D3KooWGONE9999', '12D3KooWGON', '…NE9999', 'NE9999']) {
      let err: unknown
      try { resolvePinned(view, gone, on) } catch (e) { err = e }
      expect(err).toBeInstanceOf(MemberAway)
      // queued as a busy member would be
      expect(err).toMatchObject({ code: 'ERR_NO_CAPACITY', message: 'laptop (…NE9999) left the grid 40 s ago; waiting for it to come back' })
    }
    // a member in the view wins over one remembered under the same name
    expect(resolvePinned(view, gone, 'ws2').peer).toBe('12D3KooWBBBB2222')
    expect(() => resolvePinned(view, gone, 'nope')).toThrow(expect.objectContaining({ code: 'ERR_NO_SUCH_PEER', message: 'no member of the grid is called nope' }))
    expect(() => resolvePinned(view, gone, '12D3KooWBBB')).toThrow(expect.objectContaining({ code: 'ERR_AMBIGUOUS_PEER' }))
  })

  it.each([[0, '0 s'], [40_400, '40 s'], [119_000, '119 s'], [12 * 60_000, '12 min'], [5 * 3_600_000, '5 h']])('formats %i ms ago as %s', (ms, said) => {
    expect(formatAgo(ms)).toBe(said)
  })
})

describe('fit: memory, GPU memory, pools and labels', () => {
  const GiB = 2 ** 30
  const lab = [
    peer('12D3KooWM0', 'small', { cpus: 4, mem: 8 * GiB, memFree: 2 * GiB, pools: ['lab'], labels: { room: 'b12' } }),
    peer('12D3KooWM1', 'gpubox', {
      cpus: 32, mem: 256 * GiB, gpus: ['NVIDIA A100-SXM4-80GB', 'NVIDIA GeForce RTX 4090', 'NVIDIA A100-SXM4-40GB'], gpuMem: [81920, 24564, 40960],
      gpusFree: [1, 2], pools: ['lab', 'ml'], labels: { room: 'b14', os: 'linux' }
    }),
    peer('12D3KooWM2', 'office', { cpus: 8, mem: 32 * GiB, labels: { room: 'b12', os: 'linux' } })
  ]
  const [small, gpubox, office] = lab

  it('counts memory against what is lent and what is free', () => {
    expect(fitsEver(small, { cpus: 1, gpus: 0, memBytes: 8 * GiB })).toBe(true)
    expect(fitsNow(small, { cpus: 1, gpus: 0, memBytes: 8 * GiB })).toBe(false)
    expect(fitsNow(small, { cpus: 1, gpus: 0, memBytes: 2 * GiB })).toBe(true)
    expect(fitsEver(small, { cpus: 1, gpus: 0, memBytes: 8 * GiB + 1 })).toBe(false)
    expect(candidates(lab, { cpus: 1, gpus: 0, memBytes: 4 * GiB }).map((p) => p.resources.host)).toEqual(['office', 'gpubox'])
  })

  it('counts only GPUs with enough memory, with the model too', () => {
    expect(fitsEver(gpubox, { cpus: 1, gpus: 2, gpuMemBytes: 40 * GiB })).toBe(true)
    expect(fitsEver(gpubox, { cpus: 1, gpus: 3, gpuMemBytes: 40 * GiB })).toBe(false)
    // GPU 0 (80 GiB) is busy, GPU 2 (40 GiB) is free.
    expect(fitsNow(gpubox, { cpus: 1, gpus: 1, gpuMemBytes: 40 * GiB })).toBe(true)
    expect(fitsNow(gpubox, { cpus: 1, gpus: 1, gpuMemBytes: 80 * GiB })).toBe(false)
    expect(fitsEver(gpubox, { cpus: 1, gpus: 1, gpuMemBytes: 80 * GiB })).toBe(true)
    expect(fitsNow(gpubox, { cpus: 1, gpus: 1, gpuModel: 'a100', gpuMemBytes: 24 * GiB })).toBe(true)
    expect(fitsEver(gpubox, { cpus: 1, gpus: 2, gpuModel: '4090', gpuMemBytes: 16 * GiB })).toBe(false)
    expect(() => candidates(lab, { cpus: 1, gpus: 1, gpuMemBytes: 80 * GiB })).toThrow(expect.objectContaining({ code: 'ERR_NO_CAPACITY' }))
  })

  it('keeps to the pool and to every label asked for', () => {
    expect(candidates(lab, { cpus: 1, gpus: 0, pool: 'lab' }).map((p) => p.resources.host).sort()).toEqual(['gpubox', 'small'])
    expect(candidates(lab, { cpus: 1, gpus: 0, pool: 'ml' }).map((p) => p.resources.host)).toEqual(['gpubox'])
    expect(candidates(lab, { cpus: 1, gpus: 0, labels: { room: 'b12' } }).map((p) => p.resources.host).sort()).toEqual(['office', 'small'])
    expect(candidates(lab, { cpus: 1, gpus: 0, labels: { room: 'b12', os: 'linux' } }).map((p) => p.resources.host)).toEqual(['office'])
    expect(candidates(lab, { cpus: 1, gpus: 0, pool: 'lab', labels: { os: 'linux' } }).map((p) => p.resources.host)).toEqual(['gpubox'])
    expect(fitsNow(office, { cpus: 1, gpus: 0, pool: 'lab' })).toBe(false)
    expect(fitsEver(office, { cpus: 1, gpus: 0, labels: { room: 'B12' } })).toBe(false)
    // A label key that is a property of every object is not a label a member has.
    expect(fitsEver(office, { cpus: 1, gpus: 0, labels: { constructor: 'x' } })).toBe(false)
    expect(fitsEver(office, { cpus: 1, gpus: 0, labels: {} })).toBe(true)
  })

  it('describes the whole request and the largest member that could be asked when nothing fits', () => {
    expect(() => candidates(lab, { cpus: 2, gpus: 2, gpuModel: 'a100', gpuMemBytes: 80 * GiB, memBytes: 16 * GiB, pool: 'lab' })).toThrow(
      'no member of the grid could ever run a command that needs 2 cores, 16 GiB of memory and 2 GPUs matching "a100" with at least 80 GiB each, in pool "lab": ' +
      'the largest member in pool "lab", gpubox, lends 32 cores, 256 GiB of memory and 3 GPUs ' +
      '(1× NVIDIA A100-SXM4-80GB with 80 GiB, 1× NVIDIA GeForce RTX 4090 with 24 GiB, 1× NVIDIA A100-SXM4-40GB with 40 GiB)')
    expect(() => candidates(lab, { cpus: 1, gpus: 1, gpuMemBytes: 96 * GiB })).toThrow(/needs 1 core and 1 GPU with at least 96 GiB: the largest member, gpubox/)
    expect(() => candidates(lab, { cpus: 64, gpus: 0, labels: { room: 'b12', os: 'linux' } }))
      .toThrow(/needs 64 cores, labelled room=b12, os=linux: the largest member labelled room=b12, os=linux, office, lends 8 cores/)
  })

  it('says when no member has the labels at all', () => {
    let err: any
    try { candidates(lab, { cpus: 1, gpus: 0, pool: 'ml', labels: { rack: 'r1' } }) } catch (e) { err = e }
    expect(err.code).toBe('ERR_IMPOSSIBLE_REQUEST')
    expect(err.message).toBe('no member of the grid could ever run a command that needs 1 core, in pool "ml", labelled rack=r1: ' +
      'no member is in pool "ml" and labelled rack=r1; the largest member, gpubox, lends 32 cores, 256 GiB of memory and 3 GPUs ' +
      '(1× NVIDIA A100-SXM4-80GB with 80 GiB, 1× NVIDIA GeForce RTX 4090 with 24 GiB, 1× NVIDIA A100-SXM4-40GB with 40 GiB)')
    expect(err.hint).toContain('pools, labels')
  })

  it('names the pools the grid has when no member is in the pool asked for', () => {
    let err: any
    try { candidates(lab, { cpus: 1, gpus: 0, pool: 'cpu-box', labels: { rack: 'r1' } }) } catch (e) { err = e }
    expect(err.code).toBe('ERR_IMPOSSIBLE_REQUEST')
    expect(err.message).toBe('no member of the grid is in pool "cpu-box": the grid\'s pools are lab, ml')
    expect(err.hint).toBe('-P reads cpu-N, gpu-N, gpu-MODEL and gpu-MODEL-N as shapes, any other name as a pool (vgrid agent --pool NAME)')
    const office = lab.filter((p) => p.resources.host === 'office')
    expect(() => candidates(office, { cpus: 1, gpus: 0, pool: 'lab' })).toThrow('no member of the grid is in pool "lab": no member is in any pool')
  })

  it('draws distinct members to claim on, in proportion to their free capacity', () => {
    const members = [peer('12D3KooWX1', 'idle', { cpus: 4, free: 4 }), peer('12D3KooWX2', 'half', { cpus: 4, free: 2 }), peer('12D3KooWX3', 'full', { cpus: 4, free: 0 })]
    const counts = new Map<string, number>()
    let seed = 1
    const random = (): number => { seed = (seed * 16807) % 2147483647; return (seed - 1) / 2147483646 }
    for (let i = 0; i < 3000; i++) {
      const [first, second] = chooseClaimTargets(members, 2, random, { cpus: 1, gpus: 0 })
      expect(first).not.toBe(second)
      counts.set(first!.resources.host, (counts.get(first!.resources.host) ?? 0) + 1)
    }
    // Weights 1, 0.5 and a token 0.001: about 2/3, 1/3 and almost never.
    expect(counts.get('idle')! / 3000).toBeCloseTo(2 / 3, 1)
    expect(counts.get('half')! / 3000).toBeCloseTo(1 / 3, 1)
    expect(counts.get('full') ?? 0).toBeLessThan(15)
    expect(chooseClaimTargets(members, 5, random)).toHaveLength(3)
    expect(chooseClaimTargets([], 2, random)).toEqual([])
  })
})

describe('gangs the grid could never hold', () => {
  const three = ['1', '2', '3'].map((i) => peer(`12D3KooWGANG000${i}`, `n${i}`, { cpus: 2, free: 0 }))

  it('counts the shards every member could hold idle, busy or not', () => {
    expect(gangCapacity(three, { cpus: 2, gpus: 0 })).toBe(3)
    expect(gangCapacity(three, { cpus: 1, gpus: 0 })).toBe(6)
    expect(gangCapacity(three, { cpus: 3, gpus: 0 })).toBe(0)
    expect(gangCapacity(view, { cpus: 1, gpus: 1, gpuModel: 'a100' })).toBe(2)
    expect(gangCapacity(view, { cpus: 0, gpus: 0 })).toBe(Infinity)
    expect(gangCapacity(view, { cpus: 4, gpus: 0, memBytes: 2 ** 33 })).toBe(2 + 2 + 2)
  })

  it('refuses -N 4 --gang --cpus 2 on three members of two cores, and says how many fit', () => {
    const err = impossibleGang(three, { cpus: 2, gpus: 0 }, 4)
    expect(err?.code).toBe('ERR_IMPOSSIBLE_REQUEST')
    expect(err?.message).toContain('at most 3 at once')
    expect(impossibleGang(three, { cpus: 2, gpus: 0 }, 3)).toBeUndefined()
  })
})

describe('where the shards of a gang go', () => {
  it('fills members in view order, counting what earlier shards took, and names their addresses', () => {
    const a = { ...peer('12D3KooWGA', 'a', { cpus: 4, free: 3 }), addrs: ['/ip4/10.0.0.1/tcp/7321'] }
    const b = peer('12D3KooWGB', 'b', { cpus: 2 })
    expect(assignGang([a, b], [{ cpus: 2, gpus: 0 }, { cpus: 1, gpus: 0 }, { cpus: 2, gpus: 0 }], 'ME')).toEqual([
      { peer: '12D3KooWGA', address: '10.0.0.1' }, { peer: '12D3KooWGA', address: '10.0.0.1' }, { peer: '12D3KooWGB', address: 'b' }
    ])
    // the view is not changed by the arithmetic
    expect(a.load.cpusFree).toBe(3)
  })

  it('gives each GPU once, and nothing when not every shard fits now', () => {
    const g = peer('12D3KooWGG', 'g', { cpus: 8, gpus: ['A100', 'A100'] })
    expect(assignGang([g], [{ cpus: 1, gpus: 1 }, { cpus: 1, gpus: 1 }], 'ME')?.map((x) => x.peer)).toEqual(['12D3KooWGG', '12D3KooWGG'])
    expect(assignGang([g], [{ cpus: 1, gpus: 1 }, { cpus: 1, gpus: 1 }, { cpus: 1, gpus: 1 }], 'ME')).toBeUndefined()
    expect(g.load.gpusFree).toEqual([0, 1])
  })

  it('skips members leaving, and members that take no commands from this one', () => {
    const leaving = { ...peer('12D3KooWGL', 'l', { cpus: 8 }), leaving: true }
    const picky = { ...peer('12D3KooWGP', 'p', { cpus: 8 }), offer: { ...peer('x', 'x', { cpus: 8 }).offer, acceptFrom: ['OTHER'] } }
    expect(assignGang([leaving, picky], [{ cpus: 1, gpus: 0 }], 'ME')).toBeUndefined()
  })
})

describe('--accept-from in placement', () => {
  const only = (p: PeerView, ids: string[]): PeerView => ({ ...p, offer: { ...p.offer, acceptFrom: ids } })
  const me = peer('ME', 'me', { self: true, cpus: 1 })
  const open = peer('P1', 'open', { cpus: 4 })
  const picky = only(peer('P2', 'picky', { cpus: 16 }), ['OTHER'])

  it('a member accepts its own runs, and others\' as its advertisement says', () => {
    expect(acceptsFrom(only(me, []), 'ME')).toBe(true)
    expect(acceptsFrom(open, 'ME')).toBe(true)
    expect(acceptsFrom(picky, 'ME')).toBe(false)
    expect(acceptsFrom(picky, 'OTHER')).toBe(true)
  })

  it('passes members by that would refuse, and says so when only they could run it', () => {
    const spec = { argv: ['true'], cpus: 8, gpus: 0, env: {} } as unknown as Parameters<typeof accepting>[1]
    expect(accepting([me, open], spec, 'ME')).toEqual([me, open])
    expect(accepting([me, open, picky], { ...spec, cpus: 1 }, 'ME').map((p) => p.peer)).toEqual(['ME', 'P1'])
    expect(() => accepting([me, open, picky], spec, 'ME')).toThrow(expect.objectContaining({ code: 'ERR_NOT_ALLOWED' }))
    // Too big for every member, accepting or not: that is what the user must hear.
    expect(() => accepting([me, open, picky], { ...spec, cpus: 64 }, 'ME')).toThrow(expect.objectContaining({ code: 'ERR_IMPOSSIBLE_REQUEST' }))
  })
})
