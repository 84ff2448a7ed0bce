/**
 * `vgrid task list|show|log|cancel|wait`: a request or a log stream to the local agent each,
 * which finds the task wherever its owner is. Loaded only when one of them runs.
 */
import { vgridHome } from '../agent/config.js'
import { findWorkspace } from '../fs-sync/workspace.js'
import { call } from '../agent/control/client.js'
import { isFinal, taskExitCode } from '../agent/tasks/types.js'
import { EXIT_BROKEN_PIPE, formatNotice } from './output.js'
import { printTaskLog, type Out } from './task-log.js'
import { untilAgentBack } from './agent-back.js'

/** Said once when `task wait` or `task log -f` loses its agent. */
const AGENT_GONE = 'the agent stopped; waiting for it to come back (Ctrl-C stops waiting; the task is not touched)'
import { describeState, flattenTrees, renderTaskList, renderTaskShow, selectTaskTrees, shortTaskId, taskEndNotice, taskJson, tasksJson } from './task-output.js'

export type TaskInvocation =
  | { kind: 'task', action: 'list', all: boolean, json: boolean }
  | { kind: 'task', action: 'show', id: string, json: boolean }
  | { kind: 'task', action: 'log', id: string, follow: boolean, stderrOnly: boolean }
  | { kind: 'task', action: 'cancel', id: string }
  | { kind: 'task', action: 'wait', id: string }

export interface TaskIo {
  env: NodeJS.ProcessEnv
  stdout: Out
  stderr: Out
  now?: () => number
}

/**
 * The workspace of the current directory, as vbatch finds it: the scope in which a task name
 * was given (`vgrid task log prep` in the project where `vbatch --name prep` ran). None when
 * the current directory is gone; the agent then looks the name up everywhere.
 */
function here (io: TaskIo): { workspace?: string } {
  try {
    return { workspace: findWorkspace(process.cwd(), undefined, io.env).dir }
  } catch {
    return {}
  }
}

/** Resolves with the exit status; agent failures are thrown for the caller to print. */
export async function runTaskCommand (inv: TaskInvocation, io: TaskIo): Promise<number> {
  const home = vgridHome(io.env)
  const now = io.now ?? Date.now
  switch (inv.action) {
    case 'list': {
      const { tasks, unreachable } = await call(home, { t: 'task-list', all: inv.all })
      if (unreachable.length > 0) {
        io.stderr.write(formatNotice('vgrid', `${unreachable.length === 1 ? '1 member' : `${unreachable.length} members`} did not answer; ` +
          `their tasks are missing: ${unreachable.join(', ')}`))
      }
      const sel = selectTaskTrees(tasks, inv.all, now())
      if (inv.json) {
        io.stdout.write(tasksJson(flattenTrees(sel.trees), sel.hidden))
      } else {
        const width = io.stdout.isTTY === true && io.stdout.columns !== undefined && io.stdout.columns > 0 ? io.stdout.columns : undefined
        io.stdout.write(renderTaskList(sel, width !== undefined ? { now: now(), width } : { now: now() }))
      }
      return 0
    }
    case 'show': {
      const { task } = await call(home, { t: 'task-show', id: inv.id, ...here(io) })
      io.stdout.write(inv.json ? taskJson(task) : renderTaskShow(task, now()))
      return 0
    }
    case 'log': {
      const position = { bytes: 0 }
      const print = async (): Promise<Awaited<ReturnType<typeof printTaskLog>>> => await printTaskLog(inv.id, { follow: inv.follow, stderrOnly: inv.stderrOnly, position, ...here(io) }, { home, stdout: io.stdout, stderr: io.stderr, client: 'vgrid' })
      // Following, a restart of the agent is waited through; the log goes on where it was.
      const r = inv.follow ? await untilAgentBack(print, { onGone: () => { io.stderr.write(formatNotice('vgrid', AGENT_GONE)) } }) : await print()
      if (r.brokenPipe) return EXIT_BROKEN_PIPE
      // Following, we were there until the end: say how it ended, as `wait` does.
      return inv.follow && r.task !== undefined ? taskExitCode(r.task) : 0
    }
    case 'cancel': {
      const { task, shards } = await call(home, { t: 'task-cancel', id: inv.id, ...here(io) })
      if (shards !== undefined) {
        const ended = shards.filter((t) => isFinal(t.state) && t.state !== 'cancelled').length
        io.stdout.write(`cancelling ${inv.id}: ${shards.length} shards${ended > 0 ? ` (${ended} had already ended)` : ''}\n`)
        return 0
      }
      const subs = task.children.length === 0 ? '' : ` (and its ${task.children.length === 1 ? 'sub-task' : `${task.children.length} sub-tasks`})`
      // The agent answers once the task is cancelled, or at once for one that had already ended.
      io.stdout.write(task.state === 'cancelled'
        ? `cancelled ${task.id}${subs}\n`
        : isFinal(task.state) ? `task ${task.id} had already ended: ${describeState(task)}\n` : `cancelling ${task.id}${subs}\n`)
      return 0
    }
    case 'wait': {
      const { task, shards } = await untilAgentBack(async () => await call(home, { t: 'task-wait', id: inv.id, ...here(io) }),
        { onGone: () => { io.stderr.write(formatNotice('vgrid', AGENT_GONE)) } })
      if (shards !== undefined) {
        // A fan-out: succeeded when every shard did, else the status of the first that did not.
        const bad = shards.filter((t) => t.state !== 'succeeded')
        if (bad.length === 0) return 0
        const named = bad.slice(0, 3).map((t) => `[${t.shard?.index ?? '?'}] ${describeState(t)}`).join(', ')
        io.stderr.write(formatNotice('vgrid', `${inv.id}: ${bad.length} of ${shards.length} shards did not succeed: ${named}${bad.length > 3 ? ', …' : ''}`))
        return taskExitCode(bad[0]!)
      }
      const notice = task.state === 'succeeded' ? undefined : taskEndNotice(task) ?? `task ${shortTaskId(task.id)} ${describeState(task)}`
      if (notice !== undefined) io.stderr.write(formatNotice('vgrid', notice))
      return taskExitCode(task)
    }
  }
}
