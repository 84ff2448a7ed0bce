/**
 * The submitting end of a run placed on another member: its events down to the run's
 * followers, inputs up to the executor, until the command's exit (or error) has reached them;
 * and the way back to a detached run whose stream broke or whose owner restarted (reattachRun).
 */
import { VgridError, fromWire, toWire } from '../../common/errors.js'
import type { FrameChannel } from '../../common/channel.js'
import { obj } from '../../common/validate.js'
import { createLogger } from '../../common/log.js'
import { withTimeout } from '../../common/timeout.js'
import { parseExecEvent, describeExit, type ExecEvent, type ExecInput } from '../../exec/index.js'
import type { WorkspaceRef } from '../../fs-sync/index.js'
import { EXEC_PROTOCOL, EXEC_PROTOCOL_VERSION } from '../../protocol/exec.js'
import { EXEC_REQUEST_TIMEOUT_MS } from '../constants.js'
import type { RunContext } from './context.js'
import { isRefusal } from './refusal.js'
import type { RunSink } from './run.js'
import { shortPeerId } from '../../common/peer-id.js'

const log = createLogger('run')

/** How long the end of a run's stream may take to close gracefully once its exit is seen. */
const END_SEEN_CLOSE_MS = 2_000

/** The attempt of a detached run is gone from its executor (it restarted, or dropped it): lost, not failed. */
export class AttemptGone extends VgridError {}

/**
 * The owner comes back for a detached run (held.ts) after its stream broke or this agent
 * restarted: what its log lacks is replayed, then the session goes on as placeOnce's would.
 */
export async function reattachRun (ctx: RunContext, client: RunSink, o: { task: string, peer: string, host: string, have: number, started: boolean, workspace?: WorkspaceRef, startedMs: number }): Promise<void> {
  const remote = await ctx.grid.open(o.peer, EXEC_PROTOCOL, { signal: ctx.shutdown })
  try {
    await remote.send({ t: 'attach', v: EXEC_PROTOCOL_VERSION, task: o.task, have: o.have })
    const first = await withTimeout(remote.recv(), EXEC_REQUEST_TIMEOUT_MS, `${o.host} did not answer the re-attach within ${EXEC_REQUEST_TIMEOUT_MS} ms`)
    if (first === undefined) throw new VgridError('ERR_PEER_LOST', `${o.host} closed the stream`)
    const m = obj(first, 'attach answer')
    if (m.t === 'error') {
      const ev = parseExecEvent(first)
      if (ev.t === 'error' && ev.error.code === 'ERR_TASK_NOT_FOUND') throw new AttemptGone('ERR_PEER_LOST', ev.error.message)
      throw new VgridError('ERR_PEER_LOST', ev.t === 'error' ? ev.error.message : 'refused')
    }
    if (m.t !== 'attached') throw new VgridError('ERR_BAD_MESSAGE', 'malformed message: expected attached')
    await relay(ctx, client, remote, o, {
      onOutputs: async (outputs) => {
        if (o.workspace === undefined) throw new VgridError('ERR_BAD_MESSAGE', 'outputs offered for a run without a workspace')
        await ctx.sync.bringBackReattached(o.workspace, o.peer, outputs, o.task, o.startedMs, async (e) => { await client.send(e) })
      },
      started: o.started
    })
  } finally {
    remote.destroy()
  }
}

/**
 * The CLI's channel as one relay after another reads it: a relay whose member refused the
 * run leaves its read of the next input pending, and a channel takes one read at a time, so
 * the next relay shares that read instead of starting one of its own.
 */
export function oneReader (client: RunSink): RunSink {
  let pending: Promise<ExecInput | undefined> | undefined
  return {
    get closed () { return client.closed },
    send: async (msg) => { await client.send(msg) },
    recv: async () => {
      const read = pending ??= client.recv()
      try {
        return await read
      } finally {
        if (pending === read) pending = undefined
      }
    },
    close: async () => { await client.close() },
    destroy: (err) => { client.destroy(err) }
  }
}

/** How a relay treats the run's outputs, and whether its command had started already (a re-attach). */
interface RelayOptions {
  onOutputs: (o: { root: Uint8Array, session: string, base?: Uint8Array }) => Promise<void>
  started?: boolean
  /** The command has ended there (its outputs, exit or error came): the member's room is free again. */
  onEnd?: () => void
}

/** Events down, inputs up, until the command's exit (or error) has reached the run's followers. */
export async function relay (ctx: RunContext, client: RunSink, remote: FrameChannel, member: { peer: string, host: string }, o: RelayOptions): Promise<void> {
  const { peer, host } = member
  const { onOutputs } = o
  let started = o.started === true
  let ended = false
  const end = (): void => {
    if (ended) return
    ended = true
    o.onEnd?.()
  }
  // Until `started`, the member was still syncing the workspace or starting the command.
  const lost = (why: string): VgridError => new VgridError('ERR_PEER_LOST', `lost ${host} (${shortPeerId(peer)}) ${started ? 'while the command ran' : 'before the command started'}: ${why}`)
  let done = false
  // A member that leaves the view (stopped, or silent too long) is lost even if TCP has not noticed.
  const unwatch = ctx.grid.onViewChange(() => {
    if (!done && !ctx.grid.view().some((p) => p.peer === peer)) remote.destroy(lost('it left the grid'))
  })
  const up = (async () => {
    while (!done) {
      // Validated where they came in (the CLI's, by agent.ts's followInputs): a Run takes ExecInputs only.
      const input = await client.recv().catch(() => undefined)
      if (input === undefined) {
        // The run's follower went away without waiting for the exit: the command must not outlive it.
        if (!done) remote.destroy()
        return
      }
      // A send that fails means the remote stream has ended: the loop below reads why
      // (the exit that raced this input, or a lost member).
      if (!await remote.send(input).then(() => true, () => false)) return
    }
  })()
  up.catch((err) => {
    log.warn('relaying an input failed', err)
    remote.destroy()
  })
  try {
    for (;;) {
      let raw: unknown
      try {
        raw = await remote.recv()
      } catch (err) {
        // Say which member was lost and how far the command had got there, whatever broke.
        throw err instanceof VgridError && err.message.startsWith(`lost ${host} `) ? err : lost((err as Error).message ?? 'the stream broke')
      }
      if (raw === undefined) throw lost('its connection closed')
      const ev: ExecEvent = parseExecEvent(raw)
      if (ev.t === 'started') started = true
      // Refused before the start: placeOnce tries another member.
      if (ev.t === 'error' && !started && isRefusal(fromWire(ev.error))) throw fromWire(ev.error)
      if (ev.t === 'outputs' || ev.t === 'exit' || ev.t === 'error') end()
      if (ev.t === 'outputs') {
        try {
          await onOutputs(ev)
          // A detached run's executor waits for this before it sends the exit (held.ts): were this
          // agent to die during the pull, the outputs are offered again when it is back.
          await remote.send({ t: 'outputs-done' }).catch(() => {})
        } catch (err) {
          // The command ran; only its outputs did not come back. The user must know which, and how it ended.
          await client.send({ t: 'error', error: { ...toWire(err), message: `the command ${describeExit(ev.exit)}, but its outputs could not be brought back: ${(err as Error).message}` } })
          return
        }
        continue
      }
      await client.send(ev)
      if (ev.t === 'exit' || ev.t === 'error') {
        // A detached run's executor keeps it until this word (held.ts); others ignore it.
        await remote.send({ t: 'end-seen' }).catch(() => {})
        // Closed, not reset: a reset can drop that word on its way, and the executor would keep the run for days.
        await withTimeout(remote.close(), END_SEEN_CLOSE_MS, 'closing the stream').catch(() => {})
        return
      }
    }
  } finally {
    done = true
    unwatch()
  }
}
