/**
 * What the run path needs of its agent (RunContext), and small things both ends share: who this
 * agent runs as, task ids, and how a waiting placement wakes up.
 */
import os from 'node:os'
import { randomBytes } from 'node:crypto'
import type { FrameChannel } from '../../common/channel.js'
import type { ExecEvent, FifoMaker, Ledger } from '../../exec/index.js'
import type { Grid, GpuInfo, GpuUse } from '../../grid/index.js'
import type { WorkspaceSync } from '../workspace-sync.js'
import type { GroupLedger } from '../../exec/orphans.js'
import type { GuestRuns } from '../guest-run.js'
import type { HeldRuns } from '../held.js'
import type { DirPool } from '../dir-pool.js'

export interface RunContext {
  home: string
  /** The scratch directories of `--no-sync` runs, `$VGRID_HOME/scratch/N` (dir-pool.ts). */
  scratch: DirPool
  grid: Grid
  ledger: Ledger
  host: string
  /** All GPUs of the machine, to know whether it has any. */
  gpus: GpuInfo[]
  /** Aborted when the agent stops: running commands are killed. */
  shutdown: AbortSignal
  /** Tells the grid the load changed. */
  loadChanged: () => void
  sync: WorkspaceSync
  /** Makes the stdio pipes of commands run here (exec/fifos.ts). */
  fifos?: FifoMaker
  /** Sub-tasks submitted from inside commands running here (tasks/manager.ts). */
  children?: ChildTracker
  /** Where running commands' process groups are written down (exec/orphans.ts). */
  groups?: GroupLedger
  /** Wraps the session of every command run here (the owner policy watches them: guests.ts). */
  watch?: (channel: FrameChannel<unknown, ExecEvent>) => FrameChannel<unknown, ExecEvent>
  /** Who holds each GPU of this machine now, by index (advertised for `vgrid peers`). */
  gpuUse?: Map<number, GpuUse>
  /** When this agent started (ms since the epoch): its view is still forming for a while. */
  startedAt?: number
  /** Homes, sockets and sandboxes of guest commands (guest-run.ts); without it guests run as the owner's own. */
  guests?: GuestRuns
  /** Told of every guest's process group: kills them if this agent freezes (watchdog.ts). */
  watchdog?: { add: (pgid: number) => void, remove: (pgid: number) => void }
  /** Tasks of other members whose attempt runs here now: a second attempt waits until the first has ended. */
  attempts?: Set<string>
  /**
   * Why a command sent by `peer` may not run here (the owner's `--accept-from`), or
   * undefined when it may. Asked for every exec request, with the peer id its connection
   * authenticated; this agent's own runs are never asked about.
   */
  guestRefusal?: (peer: string) => string | undefined
  /** Detached runs of other members' tasks: they outlive their owner's stream (held.ts). */
  held?: HeldRuns
}

/** The OS user this agent runs as: for whom its commands run, as other members show it. */
export const USER = ((): string => {
  try {
    return os.userInfo().username.slice(0, 64)
  } catch {
    return 'unknown'
  }
})()

/** Another member's run here: who sent it. */
export interface Guest {
  /** The submitting member's peer id, from the libp2p connection (authenticated). */
  peer: string
  /** `user@host`, as that member states it. */
  who: string
}

/** What the executor needs of the task system for a command that submits sub-tasks. */
export interface ChildTracker {
  /**
   * The command of `task` starts here: sub-tasks naming it as parent attach to it. `guest`:
   * the member that sent it, when it is not this agent's own.
   */
  begin: (task: string, guest?: Guest) => {
    /** After the command ended: tells the submitter, waits for every sub-task to end. */
    settle: (send: (ev: ExecEvent) => Promise<void>) => Promise<void>
    /** Cancels the sub-tasks (the task itself is being cancelled). */
    cancel: () => void
    /** The run is over here, however it ended. */
    end: () => void
  }
}

export function newTaskId (): string {
  return randomBytes(8).toString('hex')
}

/**
 * An agent finds the grid again in the first seconds after it starts. A run for a member not
 * yet in its view then waits for it (queued, placed at the next change of the view) instead
 * of failing: a task placed again after a restart, or a `vrun --on` typed at once.
 */
export const VIEW_SETTLE_MS = 15_000

/**
 * Resolves at the next change of the view, when the agent stops, or after `ms`; `also`
 * subscribes to more that ends the wait (it returns its unsubscribe).
 */
export async function wakeUp (ctx: Pick<RunContext, 'grid' | 'shutdown'>, ms: number, also?: (wake: () => void) => () => void): Promise<void> {
  await new Promise<void>((resolve) => {
    const done = (): void => { clearTimeout(timer); unwatch(); unalso?.(); ctx.shutdown.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, ms)
    const unwatch = ctx.grid.onViewChange(done)
    const unalso = also?.(done)
    ctx.shutdown.addEventListener('abort', done, { once: true })
  })
}

