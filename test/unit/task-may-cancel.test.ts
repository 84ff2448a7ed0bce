/** The cancel rule (DESIGN §5) as a table: who may cancel a task, from its record alone. */
import { describe, it, expect } from 'vitest'
import { mayCancel, type TaskRecord } from '../../src/agent/tasks/types.js'

const base: TaskRecord = {
  id: '0123456789abcdef', owner: 'A', ownerHost: 'a', submitter: 'S', argv: ['true'], state: 'running', created: 1,
  peer: 'B', host: 'b', deps: [], retries: 1, attempts: [{ peer: 'B', host: 'b', started: 2 }], attached: false, children: []
}

describe('mayCancel', () => {
  const cases: Array<[string, Partial<TaskRecord>, string, boolean]> = [
    ['its owner', {}, 'A', true],
    ['the member it was submitted from', {}, 'S', true],
    ['the member running it', {}, 'B', true],
    ['a third member', {}, 'C', false],
    ['an older record without submitter: its owner', { submitter: undefined }, 'A', true],
    ['an executor whose attempt was lost (queued again)', { state: 'queued', attempts: [{ peer: 'B', host: 'b', started: 2, ended: 3, state: 'lost' }] }, 'B', false],
    ['the last executor of a task that is over', { state: 'succeeded', attempts: [{ peer: 'B', host: 'b', started: 2, ended: 3 }] }, 'B', true],
    ['a member never placed on, of a queued task', { state: 'queued', peer: undefined, attempts: [] }, 'B', false]
  ]
  for (const [what, change, peer, allowed] of cases) {
    it(`${allowed ? 'lets' : 'refuses'} ${what}`, () => {
      expect(mayCancel({ ...base, ...change }, peer)).toBe(allowed)
    })
  }
})
