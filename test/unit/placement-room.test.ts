/** A synced workspace goes only to members whose disk can take it in (issue 16). */
import { describe, it, expect } from 'vitest'
import { candidates, hasRoomFor } from '../../src/grid/placement.js'
import { VgridError } from '../../src/common/errors.js'
import type { PeerView } from '../../src/grid/types.js'

const MB = 1e6

function peer (id: string, host: string, o: { room?: number, self?: boolean, free?: number } = {}): PeerView {
  return {
    v: 1, peer: id, seq: 1, startedAt: 1, addrs: [], version: '0.1.0',
    resources: { host, os: { platform: 'linux', distro: 'd', release: 'r', arch: 'x64' }, cpu: { model: 'c', cores: 4 }, memBytes: 2 ** 34, gpus: [] },
    offer: { cpus: 4, memBytes: 2 ** 34, gpus: [], pools: [], labels: {} },
    load: { cpusFree: o.free ?? 4, memFree: 2 ** 34, gpusFree: [], running: 0, queued: 0, cpuUtil: 0, ...(o.room !== undefined ? { storeRoom: o.room } : {}) },
    lastSeenMs: 0, self: o.self ?? false
  }
}

const small = peer('12D3KooWSMALL111', 'small', { room: 31 * MB })
const big = peer('12D3KooWBIG22222', 'big', { room: 500 * MB })
const old = peer('12D3KooWOLD33333', 'old')
const req = { cpus: 1, gpus: 0 }

function thrown (fn: () => unknown): VgridError {
  try { fn() } catch (err) { return err as VgridError }
  throw new Error('did not throw')
}

describe('placement and disk room', () => {
  it('skips a member whose store cannot take the workspace in', () => {
    expect(candidates([small, big], req, 100 * MB).map((p) => p.resources.host)).toEqual(['big'])
    expect(candidates([small, big], req, 10 * MB).map((p) => p.resources.host).sort()).toEqual(['big', 'small'])
  })

  it('leaves alone runs without a workspace, this agent (it runs in place), and members that do not say', () => {
    expect(hasRoomFor(small, undefined)).toBe(true)
    expect(hasRoomFor(small, 0)).toBe(true)
    expect(hasRoomFor(peer('12D3KooWSELF4444', 'self', { room: 0, self: true }), 100 * MB)).toBe(true)
    expect(hasRoomFor(old, 100 * MB)).toBe(true)
    expect(hasRoomFor(small, 31 * MB)).toBe(true)
    expect(hasRoomFor(small, 31 * MB + 1)).toBe(false)
  })

  it('fails at once, naming the member and its room, when none that could run it has room', () => {
    const err = thrown(() => candidates([small], req, 100 * MB))
    expect(err.code).toBe('ERR_NO_SPACE')
    expect(err.message).toBe('the only member that could run it has room for this workspace (needs 95.4 MiB): small (…ALL111) has 29.6 MiB')
    expect(err.hint).toMatch(/--no-sync/)
  })

  it('waits, rather than fails, when a member with room is only busy', () => {
    const busy = peer('12D3KooWBUSY5555', 'busy', { room: 500 * MB, free: 0 })
    expect(thrown(() => candidates([small, busy], req, 100 * MB)).code).toBe('ERR_NO_CAPACITY')
  })
})
