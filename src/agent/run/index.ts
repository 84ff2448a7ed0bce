/** The run path: placing a command on the grid (placer.ts), following it (run.ts, relay.ts), executing one (execute.ts). */
export { Run, type RunListener, type RunSink } from './run.js'
export { Placer, type SubmitOptions } from './placer.js'
export { serveExecProtocol, executeHere } from './execute.js'
export { reattachRun, AttemptGone } from './relay.js'
export { isRefusal, refusalOf } from './refusal.js'
export { linkCommands, makeCwd } from './workdir.js'
export { USER, newTaskId, wakeUp, VIEW_SETTLE_MS, type RunContext, type ChildTracker, type Guest } from './context.js'
