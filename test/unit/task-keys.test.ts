/** What an owner keeps of its ended tasks (keys.ts): a fan-out's shards share one group. */
import { describe, expect, it } from 'vitest'
import { EndedTasks, keyOf } from '../../src/agent/tasks/keys.js'
import type { TaskRecord } from '../../src/agent/tasks/types.js'

const PEER = '12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh'

function record (id: string, o: Partial<TaskRecord> = {}): TaskRecord {
  return { id, owner: PEER, ownerHost: 'lab-01', argv: ['true'], state: 'succeeded', created: 1_765_000_000_000, deps: [], retries: 0, attempts: [], attached: false, children: [], ...o }
}

describe('the keys of ended tasks', () => {
  it('has the shards of a fan-out share what their submission shares, and each keep its own index', () => {
    const ended = new EndedTasks((s) => s)
    const group = 'a000000000000000'
    for (let i = 0; i < 3; i++) ended.add({ record: record(`a00000000000000${i}`, { name: 'sweep', shard: { index: i, count: 3 } }), group, workspace: { dir: '/ws', cwd: '' } })
    ended.add({ record: record('b000000000000000', { name: 'solo', parent: 'c000000000000000', state: 'failed' }), group: 'b000000000000000' })
    const [k0, k1, k2, solo] = [...ended.values()]
    expect(k0!.of).toBe(k1!.of)
    expect(k1!.of).toBe(k2!.of)
    expect(solo!.of).not.toBe(k0!.of)
    expect({ name: k2!.name, shard: k2!.shard, group: k2!.group, workspace: k2!.workspace, owner: k2!.owner, state: k2!.state })
      .toEqual({ name: 'sweep', shard: { index: 2, count: 3 }, group, workspace: '/ws', owner: PEER, state: 'succeeded' })
    expect({ name: solo!.name, parent: solo!.parent, shard: solo!.shard, workspace: solo!.workspace, state: solo!.state })
      .toEqual({ name: 'solo', parent: 'c000000000000000', shard: undefined, workspace: '', state: 'failed' })
  })

  it('forgets the first added first, and a group with its last shard', () => {
    const ended = new EndedTasks((s) => s)
    const group = 'a000000000000000'
    ended.add({ record: record('a000000000000000', { shard: { index: 0, count: 2 } }), group })
    ended.add({ record: record('b000000000000000'), group: 'b000000000000000' })
    ended.add({ record: record('a000000000000001', { shard: { index: 1, count: 2 } }), group })
    const shared = ended.get('a000000000000001')!.of
    expect(ended.forgetFirst()).toBe('a000000000000000')
    expect(shared.members).toBe(1)
    expect(ended.forgetFirst()).toBe('b000000000000000')
    expect(ended.forgetFirst()).toBe('a000000000000001')
    expect(shared.members).toBe(0)
    expect(ended.forgetFirst()).toBeUndefined()
    // a later shard of that submission (a retried one) starts a group anew
    ended.add({ record: record('a000000000000001', { shard: { index: 1, count: 2 } }), group })
    expect(ended.get('a000000000000001')!.of).not.toBe(shared)
  })

  it('makes a key of a task not yet ended that is not kept', () => {
    const k = keyOf({ record: record('d000000000000000', { state: 'running', shard: { index: 4, count: 8 } }), group: 'd000000000000000' })
    expect({ state: k.state, shard: k.shard, members: k.of.members }).toEqual({ state: 'running', shard: { index: 4, count: 8 }, members: 0 })
  })
})
