/**
 * The commands this agent runs for the grid, as the owner policy sees them: their process
 * groups, to leave their CPU time out of the owner's load and to stop them when the owner
 * comes back (`--only-when-idle`); and their sessions, so that a command stopped that way
 * ends as lost (ERR_PEER_LOST) rather than with the exit status of a killed process. The
 * submitter then places it again when it has retries (`vbatch --retries N`), and a `vrun`
 * says why it ended.
 */
import type { FrameChannel } from '../common/channel.js'
import type { ExecEvent } from '../protocol/session.js'
import { VgridError, type WireError } from '../common/errors.js'
import type { GroupLedger } from '../exec/orphans.js'
import { GroupTerminator } from '../exec/process-group.js'

interface Session {
  /** The pid (and process group) of the command running here, from its `started` event. */
  pid?: number
  /** Set when the policy stopped it: its `exit` is replaced by this error. */
  stopped?: WireError
}

export class GuestCommands {
  private readonly live = new Set<number>()
  private readonly sessions = new Set<Session>()

  constructor (private readonly onGiveUp: (msg: string) => void = () => {}) {}

  /** `inner` (the agent's record of running groups) with this one told too. */
  groups (inner?: GroupLedger): GroupLedger {
    return {
      add: (pgid, task) => { this.live.add(pgid); inner?.add(pgid, task) },
      remove: (pgid) => { this.live.delete(pgid); inner?.remove(pgid) }
    }
  }

  /** Process groups of the commands running now. */
  pgids (): number[] {
    return [...this.live]
  }

  /**
   * A session's channel, watched: its `started` event names the command, and an `exit` after
   * stopAll() stopped that command goes out as `error` instead.
   */
  watch (channel: FrameChannel<unknown, ExecEvent>): FrameChannel<unknown, ExecEvent> {
    const s: Session = {}
    // Tracked from its start to its end (or the end of the channel).
    const forget = (): void => { this.sessions.delete(s) }
    return {
      get closed () { return channel.closed },
      send: async (ev) => {
        if (ev.t === 'started' && ev.pid > 0) { s.pid = ev.pid; this.sessions.add(s) } else if (ev.t === 'exit' || ev.t === 'error') {
          forget()
          if (ev.t === 'exit' && s.stopped !== undefined) { await channel.send({ t: 'error', error: s.stopped }); return }
        }
        await channel.send(ev)
      },
      recv: async () => await channel.recv(),
      close: async () => { forget(); await channel.close() },
      destroy: (err) => { forget(); channel.destroy(err) }
    }
  }

  /**
   * Stops every command running now: SIGTERM to its process group, SIGKILL after `graceMs`.
   * Those with a watched session end with `error` (ERR_PEER_LOST, `message`). Resolves with
   * how many were stopped, once they are gone.
   */
  async stopAll (message: string, hint: string, graceMs: number): Promise<number> {
    const error = new VgridError('ERR_PEER_LOST', message, hint).toWire()
    const pgids = this.pgids()
    for (const s of this.sessions) if (s.pid !== undefined && this.live.has(s.pid)) s.stopped = error
    await Promise.all(pgids.map(async (pgid) => {
      const t = new GroupTerminator(pgid, this.onGiveUp)
      try {
        await t.terminate('SIGTERM', graceMs)
      } finally {
        t.dispose()
      }
    }))
    return pgids.length
  }
}
