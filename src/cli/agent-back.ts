/**
 * `vgrid task wait` and `task log -f` outlive a restart of their agent (an upgrade, a
 * reboot of the agent alone): when the connection is lost they say so once and wait for the
 * agent to answer again, then go on where they were.
 */
import { VgridError } from '../common/errors.js'

/** How long a waiting command waits for its agent to come back before it gives up. */
export const AGENT_BACK_WAIT_MS = 10 * 60_000
/** How often it knocks meanwhile. */
export const AGENT_BACK_POLL_MS = 500

/** How the control client says its connection went (not an error an agent replied with). */
const CONNECTION_LOST: ReadonlySet<string> = new Set(['lost connection to the agent', 'the connection closed'])

/** The connection to the agent was lost (it stopped), or, once it was, nobody listens yet. */
function agentGone (err: unknown, wasLost: boolean): boolean {
  if (!(err instanceof VgridError)) return false
  if (err.code === 'ERR_PEER_LOST' && CONNECTION_LOST.has(err.message)) return true
  // Once it was lost: while it restarts, nobody listens, or it answers and stops at once.
  return wasLost && (err.code === 'ERR_NO_AGENT' || err.code === 'ERR_PEER_LOST' || err.code === 'ERR_TIMEOUT')
}

/**
 * Runs `attempt` again while its agent is away: `onGone` once, when the connection is lost.
 * An agent absent from the start, other errors, and an agent away longer than `waitMs` are
 * thrown.
 */
export async function untilAgentBack<T> (attempt: () => Promise<T>, o: { onGone: () => void, signal?: AbortSignal, waitMs?: number, pollMs?: number }): Promise<T> {
  let goneSince: number | undefined
  for (;;) {
    try {
      return await attempt()
    } catch (err) {
      if (!agentGone(err, goneSince !== undefined) || o.signal?.aborted === true) throw err
      if (goneSince === undefined) { goneSince = Date.now(); o.onGone() }
      if (Date.now() - goneSince > (o.waitMs ?? AGENT_BACK_WAIT_MS)) throw err
      await new Promise((resolve) => setTimeout(resolve, o.pollMs ?? AGENT_BACK_POLL_MS))
    }
  }
}
