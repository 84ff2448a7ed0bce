/**
 * The API runs every request as a control request, over an in-process channel pair, through
 * the very handler the control socket uses: what the CLI may not do, the API may not either,
 * and every validation (parseControlRequest's included) applies the same.
 */
import { memoryChannelPair, type FrameChannel } from '../common/channel.js'
import { VgridError, fromWire, toWire } from '../common/errors.js'
import { createLogger } from '../common/log.js'
import { parseControlRequest, type ControlReply, type ControlRequest } from '../protocol/control.js'

const log = createLogger('http')

/** The agent's control handler (agent.ts `handle`), as the control socket calls it. */
export type ControlHandler = (req: ControlRequest, channel: FrameChannel) => Promise<void>

/**
 * Starts one request; returns our end of the channel. The request is checked as one from the
 * socket would be (a VgridError is thrown at once), then handled; an error the handler throws
 * arrives as an `error` reply, as on the socket.
 */
export function openControl (handle: ControlHandler, request: Record<string, unknown>): FrameChannel {
  const req = parseControlRequest(request)
  const [ours, theirs] = memoryChannelPair()
  void (async () => {
    try {
      await handle(req, theirs)
    } catch (err) {
      if (!(err instanceof VgridError)) log.error(`${req.t} request over HTTP failed`, err)
      await theirs.send({ t: 'error', error: toWire(err) }).catch(() => {})
    } finally {
      await theirs.close().catch(() => {})
    }
  })()
  return ours
}

/** The next reply, an `error` reply thrown as the VgridError it carries. */
export async function nextReply (channel: FrameChannel): Promise<ControlReply | undefined> {
  const raw = await channel.recv()
  if (raw === undefined) return undefined
  const reply = raw as ControlReply
  if (reply.t === 'error') throw fromWire(reply.error)
  return reply
}

/** One request, one reply of type `want`. */
export async function controlCall<T extends ControlReply['t']> (handle: ControlHandler, request: Record<string, unknown>, want: T): Promise<Extract<ControlReply, { t: T }>> {
  const channel = openControl(handle, request)
  try {
    const reply = await nextReply(channel)
    if (reply?.t !== want) throw new VgridError('ERR_INTERNAL', `the agent answered ${reply?.t ?? 'nothing'} to ${String(request.t)}`)
    return reply as Extract<ControlReply, { t: T }>
  } finally {
    channel.destroy()
  }
}
