/** When a task may start, from how its upstream tasks ended: the pure part of dependencies. */
import { describe, it, expect } from 'vitest'
import { depsVerdict } from '../../src/agent/tasks/deps.js'
import type { DepKind, TaskDep, TaskState } from '../../src/agent/tasks/types.js'

const dep = (kind: DepKind, name: string, id: string): TaskDep => ({ kind, name, id })
const states = (m: Record<string, TaskState>) => (id: string): TaskState | undefined => m[id]

describe('depsVerdict', () => {
  it('--after waits for the end, whatever it was', () => {
    expect(depsVerdict([dep('any', 'up', 'u')], states({ u: 'running' }))).toBe('wait')
    expect(depsVerdict([dep('any', 'up', 'u')], states({ u: 'failed' }))).toBe('ready')
    expect(depsVerdict([dep('any', 'up', 'u')], states({}))).toBe('never')
  })

  it('--after-success needs every upstream to succeed', () => {
    const d = [dep('success', 'up', 'u1'), dep('success', 'up', 'u2')]
    expect(depsVerdict(d, states({ u1: 'succeeded', u2: 'running' }))).toBe('wait')
    expect(depsVerdict(d, states({ u1: 'succeeded', u2: 'succeeded' }))).toBe('ready')
    expect(depsVerdict(d, states({ u1: 'cancelled', u2: 'running' }))).toBe('never')
  })

  it('--after-fail on a fan-out: ready once all shards ended and one failed or was lost', () => {
    const d = [dep('fail', 'fan', 's1'), dep('fail', 'fan', 's2')]
    expect(depsVerdict(d, states({ s1: 'failed', s2: 'running' }))).toBe('wait')
    expect(depsVerdict(d, states({ s1: 'succeeded', s2: 'lost' }))).toBe('ready')
    expect(depsVerdict(d, states({ s1: 'succeeded', s2: 'succeeded' }))).toBe('never')
    expect(depsVerdict(d, states({ s1: 'failed' }))).toBe('never')
  })
})
