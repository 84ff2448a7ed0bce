/** Where a command goes, from a view: the pure part of placement. */
import { describe, it, expect } from 'vitest'
import { candidates, resolvePeer, fitsEver, fitsNow } from '../../src/grid/placement.js'
import type { PeerView } from '../../src/grid/types.js'

function peer (id: string, host: string, opts: { cpus?: number, free?: number, gpus?: string[], gpusFree?: number[], self?: boolean } = {}): PeerView {
  const gpus = (opts.gpus ?? []).map((model, index) => ({ index, vendor: 'nvidia', model, memoryBytes: 2 ** 34 }))
  return {
    v: 1, peer: id, seq: 1, startedAt: 1, addrs: [], version: '0.1.0',
    resources: { host, os: { platform: 'linux', distro: 'd', release: 'r', arch: 'x64' }, cpu: { model: 'c', cores: opts.cpus ?? 4 }, memBytes: 2 ** 34, gpus },
    offer: { cpus: opts.cpus ?? 4, memBytes: 2 ** 34, gpus: gpus.map((g) => g.index), pools: [], labels: {} },
    load: { cpusFree: opts.free ?? opts.cpus ?? 4, memFree: 2 ** 34, gpusFree: opts.gpusFree ?? gpus.map((g) => g.index), running: 0, queued: 0, cpuUtil: 0 },
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
    expect(candidates(view, { cpus: 1, gpus: 0 }).map((p) => p.resources.host)).toEqual(['gpu1', 'ws1', 'ws2'])
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
    expect(() => candidates(view, { cpus: 1, gpus: 3 })).toThrow(/largest member, gpu1, lends 16 cores and 2 GPUs/)
    expect(() => candidates(view, { cpus: 64, gpus: 0 })).toThrow(expect.objectContaining({ code: 'ERR_IMPOSSIBLE_REQUEST' }))
    expect(() => candidates(view, { cpus: 1, gpus: 1, gpuModel: 'h100' })).toThrow(expect.objectContaining({ code: 'ERR_IMPOSSIBLE_REQUEST' }))
    expect(() => candidates([], { cpus: 1, gpus: 0 })).toThrow(/no members/)
  })

  it('skips members that are leaving', () => {
    const leaving = { ...view[2], leaving: true }
    expect(candidates([view[0], leaving], { cpus: 1, gpus: 0 }).map((p) => p.resources.host)).toEqual(['ws1'])
  })

  it('resolves --on by id, hostname or unique prefix', () => {
    expect(resolvePeer(view, '12D3KooWBBBB2222').resources.host).toBe('ws2')
    expect(resolvePeer(view, 'GPU1').peer).toBe('12D3KooWBBBC3333')
    expect(resolvePeer(view, '12D3KooWD').resources.host).toBe('gpu2')
    expect(() => resolvePeer(view, '12D3KooWBBB')).toThrow(expect.objectContaining({ code: 'ERR_AMBIGUOUS_PEER' }))
    expect(() => resolvePeer(view, 'nope')).toThrow(expect.objectContaining({ code: 'ERR_NO_SUCH_PEER' }))
    expect(() => resolvePeer(view, '12D')).toThrow(expect.objectContaining({ code: 'ERR_NO_SUCH_PEER' }))
    const twins = [peer('12D3KooWT1', 'same'), peer('12D3KooWT2', 'same')]
    expect(() => resolvePeer(twins, 'same')).toThrow(/2 members have the hostname same/)
  })
})
