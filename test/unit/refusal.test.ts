/** What an executor's failure before the command started becomes (issue 16): its refusal, or the run's own fault. */
import { describe, it, expect } from 'vitest'
import { VgridError } from '../../src/common/errors.js'
import { ClaimReleased } from '../../src/agent/claim.js'
import { isRefusal, refusalOf } from '../../src/agent/run/index.js'

const ctx = { host: 'b', home: '/home/b/.vgrid', grid: { peerId: '12D3KooWAbCdEfGhIjKl' } }
const errno = (code: string, message: string): NodeJS.ErrnoException => Object.assign(new Error(message), { code })

describe('refusals before the start', () => {
  it.each([
    [new VgridError('ERR_NO_SPACE', 'needs 100 MiB, has 31 MiB in /home/b/.vgrid/store', 'free space'), 'ERR_NO_SPACE', 'b (…GhIjKl) has no space for this workspace (needs 100 MiB, has 31 MiB in /home/b/.vgrid/store)'],
    [errno('ENOSPC', 'ENOSPC: no space left on device, write'), 'ERR_NO_SPACE', 'b (…GhIjKl) has no space for this workspace (ENOSPC: no space left on device, write, in /home/b/.vgrid)'],
    [errno('EDQUOT', 'EDQUOT: disk quota exceeded, write'), 'ERR_NO_SPACE', 'b (…GhIjKl) has no space for this workspace (EDQUOT: disk quota exceeded, write, in /home/b/.vgrid)'],
    [errno('EIO', 'EIO: i/o error, write'), 'ERR_EXECUTOR_FAILED', 'b (…GhIjKl) could not prepare the command: EIO: i/o error, write'],
    [new VgridError('ERR_INTERNAL', 'bwrap: setting up uid map: Permission denied'), 'ERR_EXECUTOR_FAILED', 'b (…GhIjKl) could not prepare the command: bwrap: setting up uid map: Permission denied']
  ])('%s becomes %s', (err, code, message) => {
    const got = refusalOf(ctx, err) as VgridError
    expect(got.code).toBe(code)
    expect(got.message).toBe(message)
    expect(isRefusal(got)).toBe(true)
  })

  it('leaves the run\'s own faults, and a released claim, as they are', () => {
    for (const code of ['ERR_BAD_ARGUMENT', 'ERR_UNSAFE_PATH', 'ERR_WORKSPACE_TOO_LARGE', 'ERR_NO_CAPACITY', 'ERR_PEER_LOST'] as const) {
      const err = new VgridError(code, 'x')
      expect(refusalOf(ctx, err)).toBe(err)
      expect(isRefusal(err)).toBe(false)
    }
    const released = new ClaimReleased('the submitter went away')
    expect(refusalOf(ctx, released)).toBe(released)
  })
})
