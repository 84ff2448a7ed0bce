/**
 * The table of exit statuses (README, "Exit statuses") as code: how a task's end becomes the
 * status of `vgrid task wait` and `vbatch -f`, and an error the status of any command.
 */
import { describe, it, expect } from 'vitest'
import { taskExitCode, type TaskRecord } from '../../src/agent/tasks/types.js'
import { exitCodeFor } from '../../src/cli/output.js'
import { UsageError } from '../../src/cli/usage-error.js'
import { VgridError, type ErrorCode } from '../../src/common/errors.js'

const task = (o: Partial<TaskRecord>): TaskRecord => ({
  id: '0123456789abcdef', owner: 'p', ownerHost: 'h', argv: ['true'], state: 'succeeded', created: 0, deps: [], retries: 0, attempts: [], attached: false, children: [], ...o
})

describe('taskExitCode', () => {
  it.each([
    ['succeeded', { state: 'succeeded', exitCode: 0 }, 0],
    ['failed with its command\'s status', { state: 'failed', exitCode: 3 }, 3],
    ['failed by a signal', { state: 'failed', exitCode: 137 }, 137],
    ['failed: its command exited 0, a sub-task did not succeed', { state: 'failed', exitCode: 0, error: '1 sub-task did not succeed' }, 1],
    ['failed before it could start', { state: 'failed', error: 'no space' }, 255],
    ['cancelled, its command stopped by SIGTERM', { state: 'cancelled', exitCode: 143 }, 130],
    ['cancelled, its command had exited 0 (a parent)', { state: 'cancelled', exitCode: 0 }, 130],
    ['cancelled before it started', { state: 'cancelled' }, 130],
    ['upstream-failed', { state: 'upstream-failed', error: 'prep failed' }, 254],
    ['lost', { state: 'lost', error: 'its member left' }, 255]
  ] as Array<[string, Partial<TaskRecord>, number]>)('%s: %i', (_what, o, code) => {
    expect(taskExitCode(task(o))).toBe(code)
  })
})

describe('exitCodeFor', () => {
  it.each([
    ['a command line to fix', new UsageError('bad'), 2],
    ['a name or prefix that means several tasks', new VgridError('ERR_AMBIGUOUS_TASK'), 2],
    ['an --on that means several members', new VgridError('ERR_AMBIGUOUS_PEER'), 2],
    ['vrun --after whose dependency failed', new VgridError('ERR_UPSTREAM_FAILED'), 254],
    ...(['ERR_NO_AGENT', 'ERR_PEER_LOST', 'ERR_IMPOSSIBLE_REQUEST', 'ERR_TASK_NOT_FOUND', 'ERR_INTERNAL'] as ErrorCode[]).map((c) => [`${c}: the grid failed`, new VgridError(c), 255] as const),
    ['a bug', new Error('oops'), 255]
  ] as Array<[string, unknown, number]>)('%s: %i', (_what, err, code) => {
    expect(exitCodeFor(err)).toBe(code)
  })
})
