/**
 * `vgrid agent set`: changes the owner policy of the running agent over its control socket
 * (it applies at once, and is saved in $VGRID_HOME/config), then prints the policy in force.
 * With no option it only prints it. Loaded only when that command runs.
 */
import { vgridHome, type PolicyPatch } from '../agent/config.js'
import { connectAgent, lostAgent, REQUEST_TIMEOUT_MS } from '../agent/control/client.js'
import type { PolicyView } from '../protocol/control.js'
import { fromWire, VgridError } from '../common/errors.js'
import { formatBytes } from '../common/units.js'
import { bad, obj, optStr, strArray } from '../common/validate.js'

export interface PolicyReply { policy: PolicyView, warnings: string[], saved?: string }

/** Sends the patch; resolves with the agent's reply, throws its error. */
export async function setPolicy (home: string, patch: PolicyPatch, timeoutMs = REQUEST_TIMEOUT_MS): Promise<PolicyReply> {
  const { channel } = await connectAgent(home, 'vgrid', { timeoutMs })
  let timer: NodeJS.Timeout | undefined
  try {
    await channel.send({ t: 'agent-set', patch }).catch(() => { throw lostAgent() })
    const raw = await Promise.race([
      channel.recv().catch(() => undefined),
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new VgridError('ERR_TIMEOUT', `the vgrid agent did not answer within ${timeoutMs} ms`, 'look at its output, or restart it')) }, timeoutMs)
      })
    ])
    if (raw === undefined) throw lostAgent()
    return parsePolicyReply(raw)
  } finally {
    clearTimeout(timer)
    channel.destroy()
  }
}

/** The reply's shape; the numbers are only printed, so they are checked for type, not range. */
export function parsePolicyReply (raw: unknown): PolicyReply {
  const m = obj(raw, 'reply')
  if (m.t === 'error') throw fromWire(m.error)
  if (m.t !== 'policy') bad('expected a policy reply')
  const p = obj(m.policy, 'policy')
  const offer = obj(p.offer, 'policy.offer')
  const nums = (v: unknown, what: string): number[] => Array.isArray(v) && v.every((x) => typeof x === 'number') ? v : bad(`${what} is not a list of numbers`)
  const n = (v: unknown, what: string): number => typeof v === 'number' ? v : bad(`${what} is not a number`)
  const policy: PolicyView = {
    host: optStr(p.host, 'policy.host', 256) ?? '?',
    cores: n(p.cores, 'cores'),
    memBytes: n(p.memBytes, 'memBytes'),
    gpus: nums(p.gpus, 'gpus'),
    offer: { cpus: n(offer.cpus, 'offer.cpus'), memBytes: n(offer.memBytes, 'offer.memBytes'), gpus: nums(offer.gpus, 'offer.gpus') },
    nice: n(p.nice, 'nice'),
    onlyWhenIdle: p.onlyWhenIdle === true,
    running: n(p.running, 'running')
  }
  if (p.maxTasks !== undefined && p.maxTasks !== null) policy.maxTasks = n(p.maxTasks, 'maxTasks')
  if (p.lending === 'paused' || p.lending === 'draining') policy.lending = p.lending
  if (p.acceptFrom !== undefined && p.acceptFrom !== null) {
    if (!Array.isArray(p.acceptFrom)) bad('acceptFrom is not a list')
    policy.acceptFrom = p.acceptFrom.map((x, i) => {
      const o = obj(x, `acceptFrom[${i}]`)
      const peer = optStr(o.peer, `acceptFrom[${i}].peer`, 256) ?? bad(`acceptFrom[${i}].peer is missing`)
      const host = optStr(o.host, `acceptFrom[${i}].host`, 256)
      return host !== undefined ? { peer, host } : { peer }
    })
  }
  if (p.owner !== undefined && p.owner !== null) {
    const o = obj(p.owner, 'owner')
    const state = o.state === 'busy' || o.state === 'idle' ? o.state : 'starting'
    policy.owner = typeof o.load === 'number' ? { state, load: o.load } : { state }
  }
  const reply: PolicyReply = { policy, warnings: strArray(m.warnings ?? [], 'warnings', 64, 1024) }
  const saved = optStr(m.saved, 'saved', 4096)
  if (saved !== undefined) reply.saved = saved
  return reply
}

/** What `vgrid agent set` prints. */
export function renderPolicy (r: PolicyReply): string {
  const p = r.policy
  const gpus = p.gpus.length === 0 ? 'no GPU' : `GPUs ${p.offer.gpus.length === 0 ? 'none' : p.offer.gpus.join(',')} of ${p.gpus.join(',')}`
  const owner = p.owner === undefined
    ? ''
    : `: the owner is ${p.owner.state === 'starting' ? 'being measured' : p.owner.state}${p.owner.load !== undefined ? ` (${Math.round(p.owner.load)} % of the cores)` : ''}${p.owner.state === 'idle' ? '' : ', lending nothing now'}`
  const lines = [
    `${p.host} lends ${p.offer.cpus} of ${p.cores} cores, ${formatBytes(p.offer.memBytes)} of ${formatBytes(p.memBytes)}, ${gpus}`,
    ...lendingLines(p),
    `  at once     ${p.maxTasks === undefined ? 'no limit' : `at most ${p.maxTasks} command${p.maxTasks === 1 ? '' : 's'}`} (${p.running} running)`,
    `  niceness    ${p.nice}`,
    `  when        ${p.onlyWhenIdle ? `only while its owner is idle${owner}` : 'always'}`,
    ...acceptLines(p),
    ...r.warnings.map((w) => `  warning: ${w}`),
    ...(r.saved !== undefined ? [`saved in ${r.saved}`] : [])
  ]
  return `${lines.join('\n')}\n`
}

/** While it takes no new command: why, and how to change that. */
function lendingLines (p: PolicyView): string[] {
  if (p.lending === 'paused') return ['  paused      it takes no new command; the running ones go on (vgrid agent set --resume lends again)']
  if (p.lending === 'draining') return ['  draining    it takes no new command and stops once the running ones have ended (vgrid agent set --resume calls that off)']
  return []
}

/** `  from        every member`, or one line per member accepted (peer id in full: it is what is checked). */
function acceptLines (p: PolicyView): string[] {
  if (p.acceptFrom === undefined) return ['  from        every member']
  if (p.acceptFrom.length === 0) return ['  from        no member']
  return p.acceptFrom.map((a, i) => `  ${i === 0 ? 'from' : '    '}        ${a.peer}${a.host !== undefined ? ` (${a.host})` : ''}`)
}

export async function runAgentSet (patch: PolicyPatch, env: NodeJS.ProcessEnv, out: NodeJS.WritableStream): Promise<number> {
  out.write(renderPolicy(await setPolicy(vgridHome(env), patch)))
  return 0
}
