import { describe, it, expect } from 'vitest'
import { VgridError } from '../../src/common/errors.js'
import { EXEC_PROTOCOL_VERSION, parseExecRequest, parseWorkspaceReady } from '../../src/protocol/exec.js'
import { describeExit, parseExecEvent } from '../../src/protocol/session.js'

const root = new Uint8Array(32).fill(7)
const session = 'ab'.repeat(16)

function refusal (v: unknown): string {
  try {
    parseExecEvent(v)
  } catch (err) {
    expect(err).toBeInstanceOf(VgridError)
    return (err as VgridError).message
  }
  throw new Error('accepted')
}

describe('the outputs event', () => {
  it('carries the exit to come, so a failed bring-back can say how the command ended', () => {
    expect(parseExecEvent({ t: 'outputs', root, session, exit: { code: 0 } })).toEqual({ t: 'outputs', root, session, exit: { code: 0 } })
    expect(parseExecEvent({ t: 'outputs', root, session, exit: { code: 137, signal: 'SIGKILL' } }))
      .toEqual({ t: 'outputs', root, session, exit: { code: 137, signal: 'SIGKILL' } })
  })

  it('is taken without one from an executor older than it', () => {
    expect(parseExecEvent({ t: 'outputs', root, session })).toEqual({ t: 'outputs', root, session })
  })

  it('is refused with an exit that is not one', () => {
    expect(refusal({ t: 'outputs', root, session, exit: 0 })).toMatch(/exit is not a map/)
    expect(refusal({ t: 'outputs', root, session, exit: { code: 256 } })).toMatch(/code/)
    expect(refusal({ t: 'outputs', root, session, exit: { code: 1, signal: 'S'.repeat(33) } })).toMatch(/signal/)
  })
})

describe('describeExit', () => {
  it.each([
    [{ code: 0 }, 'exited with 0'],
    [{ code: 2 }, 'exited with 2'],
    [{ code: 143, signal: 'SIGTERM' }, 'was killed by SIGTERM (exit status 143)'],
    [undefined, 'ended']
  ])('%j: the command %s', (exit, said) => {
    expect(describeExit(exit)).toBe(said)
  })
})

describe('a workspace offer still being scanned', () => {
  const base = { t: 'exec', v: EXEC_PROTOCOL_VERSION, task: '0123456789abcdef', spec: { argv: ['true'], env: {}, cpus: 1, gpus: 0 } }
  const key = 'ab'.repeat(16)

  it('is pending for a vrun, and its rest is checked when it comes', () => {
    const req = parseExecRequest({ ...base, ws: { key, path: '/home/me/project', pending: true } })
    expect(req).toMatchObject({ ws: { key, path: '/home/me/project', pending: true } })
    expect(parseWorkspaceReady({ t: 'ws', session: 'cd'.repeat(16), root: new Uint8Array(32) })).toMatchObject({ session: 'cd'.repeat(16) })
    expect(() => parseWorkspaceReady({ t: 'ws', session: 'cd'.repeat(16), root: new Uint8Array(31) })).toThrow(/32-byte/)
    expect(() => parseWorkspaceReady({ t: 'stdin', data: new Uint8Array(1) })).toThrow(/expected the workspace/)
  })

  it('is never pending for a detached task, whose go may come from an owner that came back', () => {
    expect(() => parseExecRequest({ ...base, detach: true, ws: { key, pending: true } })).toThrow(expect.objectContaining({ code: 'ERR_BAD_MESSAGE' }))
  })
})
