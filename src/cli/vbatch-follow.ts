/**
 * `vbatch -f`: after submitting, stream each task's output here (shards one after the other)
 * and exit with the first non-zero status among them, or 0. The tasks are detached all along:
 * a first Ctrl-C only lets go of them (they keep running, and `vgrid task log` picks them up
 * again); a second one within DETACH_CANCEL_WINDOW_MS cancels them.
 */
import { call } from '../agent/control/client.js'
import { taskExitCode } from '../agent/tasks/types.js'
import { EXIT_BROKEN_PIPE, formatError, formatNotice } from './output.js'
import { printTaskLog, type Out } from './task-log.js'
import { untilAgentBack } from './agent-back.js'
import { describeIds, taskEndNotice } from './task-output.js'

/** After the Ctrl-C that detaches, a second one this soon cancels the tasks. */
export const DETACH_CANCEL_WINDOW_MS = 2_000
/** The exit status after a Ctrl-C that cancelled: as a command killed by SIGINT. */
export const EXIT_INTERRUPTED = 130
/** Cancel requests in flight at once (a batch may have thousands of shards). */
const CANCEL_CONCURRENCY = 16

export interface FollowIo {
  home: string
  /** No lines of our own but the answer to a Ctrl-C. */
  quiet: boolean
  stdout: Out
  stderr: Out
  /** Where SIGINT comes from: `process`, or an EventEmitter in tests. */
  signals: { on (sig: 'SIGINT', fn: () => void): unknown, off (sig: 'SIGINT', fn: () => void): unknown }
  /** DETACH_CANCEL_WINDOW_MS unless a test says otherwise. */
  cancelWindowMs?: number
}

/** Resolves with the exit status; agent failures while following are thrown. */
export async function followTasks (ids: readonly string[], io: FollowIo): Promise<number> {
  const say = (text: string): void => { io.stderr.write(formatNotice('vbatch', text)) }
  if (!io.quiet) say(`${ids.length === 1 ? 'task' : 'tasks'} ${describeIds(ids)}`)
  const detach = new AbortController()
  /** Set by the first Ctrl-C: resolves with the exit status once the window has passed or a second one came. */
  let interrupted: Promise<number> | undefined
  let onSecond: (() => void) | undefined
  const windowMs = io.cancelWindowMs ?? DETACH_CANCEL_WINDOW_MS
  const onSigint = (): void => {
    if (interrupted === undefined) {
      const [them, it, keep] = ids.length === 1 ? ['task', 'it', 'keeps'] : ['tasks', 'them', 'keep']
      say(`detached; ${them} ${describeIds(ids)} ${keep} running (vgrid task log -f ${ids.length === 1 ? ids[0]! : 'ID'} to follow, ` +
        `Ctrl-C again within ${windowMs / 1000} s cancels ${it})`)
      detach.abort()
      interrupted = new Promise((resolve) => {
        const timer = setTimeout(() => { onSecond = undefined; resolve(0) }, windowMs)
        onSecond = () => {
          onSecond = undefined
          clearTimeout(timer)
          void cancelAll(ids, io, say).then(() => { resolve(EXIT_INTERRUPTED) })
        }
      })
    } else {
      onSecond?.()
    }
  }
  io.signals.on('SIGINT', onSigint)
  try {
    let code = 0
    for (const id of ids) {
      const position = { bytes: 0 }
      // A restart of the agent is followed through: the task runs on, the log goes on where it was.
      const r = await untilAgentBack(async () => await printTaskLog(id, { follow: true, stderrOnly: false, signal: detach.signal, position }, { home: io.home, stdout: io.stdout, stderr: io.stderr, client: 'vbatch' }),
        { onGone: () => { say('the agent stopped; following again once it is back (Ctrl-C detaches)') }, signal: detach.signal })
      if (detach.signal.aborted) break
      if (r.brokenPipe) return EXIT_BROKEN_PIPE
      if (r.task === undefined) continue
      const notice = taskEndNotice(r.task)
      if (notice !== undefined && !io.quiet) say(notice)
      if (code === 0) code = taskExitCode(r.task)
    }
    return interrupted !== undefined ? await interrupted : code
  } finally {
    io.signals.off('SIGINT', onSigint)
  }
}

/** Cancels every task, a few at a time; a refusal is said, and the others still go. */
async function cancelAll (ids: readonly string[], io: FollowIo, say: (text: string) => void): Promise<void> {
  let next = 0
  let cancelled = 0
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const id = ids[next++]!
      try {
        await call(io.home, { t: 'task-cancel', id }, { client: 'vbatch' })
        cancelled++
      } catch (err) {
        io.stderr.write(formatError('vbatch', err).replace(/^vbatch: /, `vbatch: cancelling ${id}: `))
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(CANCEL_CONCURRENCY, ids.length) }, worker))
  if (cancelled > 0) say(ids.length === 1 ? `cancelled ${ids[0]!}` : `cancelled ${cancelled} of ${ids.length} tasks`)
}
