/** A guest's paths, as the agent turns them into this machine's: never out of its copy. */
import { describe, it, expect } from 'vitest'
import { hostWorkspace, refusedForGuest } from '../../src/agent/guest-control.js'
import { within } from '../../src/exec/sandbox.js'

const scope = { task: '0123456789abcdef', workspace: { seen: '/home/alice/proj', host: '/v/workspaces/k/0', user: '/home/alice/proj' } }

describe('a guest\'s workspace paths', () => {
  it('maps a directory of its workspace to the copy here', () => {
    expect(hostWorkspace(scope, { dir: '/home/alice/proj/sub', cwd: 'a' })).toEqual({ dir: '/v/workspaces/k/0/sub', cwd: 'a', mount: '/home/alice/proj/sub' })
  })

  it('refuses a path that climbs out with ..', () => {
    for (const dir of ['/home/alice/proj/../../../etc', '/home/alice/proj/sub/../../other', '/home/alice/projx']) {
      expect(() => hostWorkspace(scope, { dir, cwd: '' }), dir).toThrow(/must be inside its task's/)
    }
  })

  it('within() resolves both sides', () => {
    expect(within('/tmp/ws/../../etc', '/tmp/ws')).toBe(false)
    expect(within('/tmp/ws/./a', '/tmp/ws')).toBe(true)
    expect(within('/anything', '/')).toBe(true)
  })
})

describe('what a guest may ask of the agent', () => {
  it('may not stop or drain it, nor change its policy', () => {
    expect(refusedForGuest({ t: 'agent-stop', drain: true })?.message).toMatch(/a task cannot stop the agent/)
    expect(refusedForGuest({ t: 'agent-stop', drain: false })?.code).toBe('ERR_NOT_ALLOWED')
    expect(refusedForGuest({ t: 'agent-set', patch: { paused: false } })?.code).toBe('ERR_NOT_ALLOWED')
    expect(refusedForGuest({ t: 'peers' })).toBeUndefined()
  })
})
