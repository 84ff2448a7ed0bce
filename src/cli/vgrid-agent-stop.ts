/**
 * `vgrid agent stop [--drain]`: asks the running agent to stop, over its control socket, and
 * waits until its process has gone. With --drain the agent first takes no new command and
 * waits for the commands running there to end; this prints how many still run, and again as
 * they end, so the owner is not left before a silent terminal. Ctrl-C here stops only the
 * waiting: the agent drains on. Loaded only when that command runs.
 */
import { vgridHome } from '../agent/config.js'
import { connectAgent, lostAgent } from '../agent/control/client.js'
import type { DrainCountView } from '../protocol/control.js'
import { fromWire, VgridError } from '../common/errors.js'
import { bad, int, obj, str } from '../common/validate.js'

/** After it said it stops, the agent exits within its shutdown deadline (1.8 s); past this it is stuck. */
export const STOPPED_WAIT_MS = 15_000
/** How often the agent's process is looked at while it stops: no event tells another process's end. */
const GONE_POLL_MS = 100

export type StopReply =
  | { t: 'draining', host: string, count: DrainCountView }
  | { t: 'stopping', host: string, pid: number, count: DrainCountView }
  | { t: 'resumed', host: string }

export function parseStopReply (raw: unknown): StopReply {
  const m = obj(raw, 'reply')
  if (m.t === 'error') throw fromWire(m.error)
  const host = str(m.host, 'host', 256)
  const count = (): DrainCountView => {
    const c = obj(m.count, 'count')
    return { guests: int(c.guests, 'count.guests', 0, 2 ** 31), others: int(c.others, 'count.others', 0, 2 ** 31) }
  }
  switch (m.t) {
    case 'draining': return { t: m.t, host, count: count() }
    case 'stopping': return { t: m.t, host, pid: int(m.pid, 'pid', 1, 2 ** 31), count: count() }
    case 'resumed': return { t: m.t, host }
    default: return bad(`expected a reply to agent stop, got ${String(m.t).slice(0, 32)}`)
  }
}

const plural = (n: number, one: string): string => `${n} ${one}${n === 1 ? '' : 's'}`

/** `2 guest commands and 1 other command`, or `nothing`. */
export function describeCount (c: DrainCountView): string {
  const parts = [
    ...(c.guests > 0 ? [plural(c.guests, 'guest command')] : []),
    ...(c.others > 0 ? [plural(c.others, c.guests > 0 ? 'other command' : 'command')] : [])
  ]
  return parts.length === 0 ? 'nothing' : parts.join(' and ')
}

/** What one reply prints; `first`: the first of this run of the command. */
export function renderStopReply (r: StopReply, drain: boolean, first: boolean): string {
  switch (r.t) {
    case 'draining': {
      const n = r.count.guests + r.count.others
      if (first) {
        return `${r.host} is draining: it takes no new command, and stops once the ${describeCount(r.count)} running there ${n === 1 ? 'has' : 'have'} ended\n` +
          '(Ctrl-C here stops only this wait: the agent drains on)\n'
      }
      return `${r.host}: ${describeCount(r.count)} still running\n`
    }
    case 'stopping': {
      if (drain) return `${r.host}: nothing runs there any more: the agent stops\n`
      const n = r.count.guests + r.count.others
      return `${r.host}: the agent stops${n > 0 ? `, ending the ${describeCount(r.count)} running there` : ''}\n`
    }
    case 'resumed':
      return `${r.host}: the drain was called off (vgrid agent set --resume): the agent runs on and takes new commands\n`
  }
}

export interface StopIo {
  env: NodeJS.ProcessEnv
  stdout: NodeJS.WritableStream
  /** Aborted by the owner's Ctrl-C: stop waiting, leave the agent draining. */
  signal?: AbortSignal
}

/** Resolves with the exit status: 0 once the agent has stopped, 1 when the drain was called off. */
export async function runAgentStop (drain: boolean, io: StopIo): Promise<number> {
  const home = vgridHome(io.env)
  const { channel } = await connectAgent(home, 'vgrid')
  const ctrlC = io.signal === undefined ? interrupted() : undefined
  const signal = io.signal ?? ctrlC!.signal
  let stopping: Extract<StopReply, { t: 'stopping' }> | undefined
  let host = 'the agent'
  try {
    await channel.send({ t: 'agent-stop', drain }).catch(() => { throw lostAgent() })
    const left = new Promise<undefined>((resolve) => { signal.addEventListener('abort', () => { resolve(undefined) }, { once: true }) })
    for (let first = true; stopping === undefined; first = false) {
      const raw = await Promise.race([channel.recv().catch(() => { throw lostAgent() }), left])
      if (signal.aborted) {
        io.stdout.write(drain
          ? `\nstopped waiting: ${host} drains on (\`vgrid agent stop\` stops it now, \`vgrid agent set --resume\` calls the drain off)\n`
          : '\nstopped waiting\n')
        return 130
      }
      if (raw === undefined) throw lostAgent()
      const r = parseStopReply(raw)
      host = r.host
      io.stdout.write(renderStopReply(r, drain, first))
      if (r.t === 'resumed') return 1
      if (r.t === 'stopping') stopping = r
    }
  } finally {
    ctrlC?.dispose()
    channel.destroy()
  }
  await waitGone(stopping.pid, STOPPED_WAIT_MS, stopping.host)
  io.stdout.write(`the agent on ${stopping.host} has stopped\n`)
  return 0
}

/** Aborted at the first SIGINT, which then no longer kills this process, until dispose(). */
function interrupted (): { signal: AbortSignal, dispose: () => void } {
  const ac = new AbortController()
  const onInt = (): void => { ac.abort() }
  process.once('SIGINT', onInt)
  return { signal: ac.signal, dispose: () => { process.off('SIGINT', onInt) } }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, as another user's process (then it is not our agent's any more).
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function waitGone (pid: number, ms: number, host: string): Promise<void> {
  const deadline = Date.now() + ms
  while (alive(pid)) {
    if (Date.now() > deadline) {
      throw new VgridError('ERR_TIMEOUT', `the agent on ${host} (process ${pid}) said it stops, but still runs after ${ms / 1000} s`,
        `look at its output; kill -TERM ${pid} stops it, as Ctrl-C in its terminal does`)
    }
    await new Promise((resolve) => setTimeout(resolve, GONE_POLL_MS))
  }
}
