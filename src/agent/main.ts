/**
 * `vgrid agent`: starts the agent in the foreground, prints who it is and the line to paste
 * on other machines, and stops cleanly on SIGINT/SIGTERM or `vgrid agent stop` (the other
 * members drop it from their view at once, thanks to the goodbye the grid publishes).
 *
 * SIGHUP reloads the owner policy from the configuration (flags given at start, then VGRID_*,
 * then $VGRID_HOME/config), as a daemon does, when the agent has no terminal (a service,
 * nohup, `&` with its input redirected). Under a terminal SIGHUP means the terminal went away:
 * the agent stops, as it did before it handled the signal.
 */
import { startAgent } from './agent.js'
import type { AgentConfig } from './config.js'
import { SHUTDOWN_DEADLINE_MS } from './constants.js'
import { VgridError } from '../common/errors.js'
import { VERSION } from '../common/version.js'
import { joinLine } from '../common/join-line.js'

/** `2 of 16 cores, 23.5 GiB, GPU 0 …`: what the agent lends. */
function lends (cpus: number, cores: number, memBytes: number, gpus: string[]): string {
  return `${cpus} of ${cores} cores, ${(memBytes / 2 ** 30).toFixed(1)} GiB, ${gpus.length === 0 ? 'no GPU' : gpus.join(', ')}`
}

function banner (agent: Awaited<ReturnType<typeof startAgent>>, acceptFrom?: string[]): string {
  const s = agent.status()
  const how = {
    new: 'started a new grid',
    token: 'joining the grid of the token',
    peers: 'joining the grid through --peer',
    rejoin: 'rejoining its grid'
  }[agent.joined]
  const gpus = agent.resources.gpus.filter((g) => agent.offer.gpus.includes(g.index))
  const lines = [
    `vgrid agent ${VERSION} on ${s.host}: ${how}`,
    `  peer id   ${s.peer}`,
    ...s.addrs.map((a, i) => `  ${i === 0 ? 'addresses' : '         '} ${a}`),
    `  lends     ${lends(agent.offer.cpus, agent.resources.cpu.cores, agent.offer.memBytes, gpus.map((g) => `GPU ${g.index} ${g.model}`))}`,
    // The owner must see at once that only these members' commands will run here.
    ...(acceptFrom ?? []).map((p, i) => `  ${i === 0 ? 'only from' : '         '} ${p}`),
    `  guests    ${agent.guests}`,
    ...agent.warnings.map((w) => `  warning: ${w}`),
    '',
    'To add another machine to this grid, run there:',
    `  ${joinLine(s.joinToken)}`,
    ''
  ]
  return lines.join('\n')
}

/** What the owner policy now is, in one line. */
function policyLine (r: ReturnType<Awaited<ReturnType<typeof startAgent>>['reload']>): string {
  const p = r.policy
  return [
    `lends ${lends(p.offer.cpus, p.cores, p.offer.memBytes, p.offer.gpus.map((i) => `GPU ${i}`))}`,
    `nice ${p.nice}`,
    `max tasks ${p.maxTasks ?? 'unlimited'}`,
    ...(p.onlyWhenIdle ? ['only when idle'] : []),
    ...(p.acceptFrom !== undefined ? [`commands only from ${p.acceptFrom.map((a) => a.host ?? a.peer).join(', ') || 'no member'}`] : []),
    ...r.warnings.map((w) => `warning: ${w}`)
  ].join('; ')
}

/**
 * Runs the agent until a signal stops it. `reread` resolves the configuration again (for
 * SIGHUP); it throws VgridError for a bad value, and then the policy in force is kept.
 */
export async function runAgent (config: AgentConfig, reread?: () => AgentConfig): Promise<never> {
  let agent
  try {
    agent = await startAgent(config)
  } catch (err) {
    if (err instanceof VgridError) {
      process.stderr.write(`vgrid: ${err.message}\n${err.hint !== undefined ? `hint: ${err.hint}\n` : ''}`)
      process.exit(255)
    }
    throw err
  }
  let stopping = false
  const stop = (sig: string): void => {
    if (stopping) return
    stopping = true
    process.stderr.write(`vgrid: ${sig}, stopping the agent\n`)
    // libp2p can keep a timer alive after stop; the deadline makes the exit certain.
    setTimeout(() => process.exit(0), SHUTDOWN_DEADLINE_MS).unref()
    agent.stop().then(() => process.exit(0), (err) => {
      process.stderr.write(`vgrid: stopping failed: ${(err as Error).message}\n`)
      process.exit(1)
    })
  }
  // `vgrid agent stop` (at once, or drained): as SIGTERM does.
  void agent.stopRequested.then((why) => { stop(why) })
  process.on('SIGINT', () => { stop('SIGINT') })
  process.on('SIGTERM', () => { stop('SIGTERM') })
  const started = agent
  process.on('SIGHUP', () => {
    if (process.stdin.isTTY === true || reread === undefined) { stop('SIGHUP'); return }
    try {
      process.stderr.write(`vgrid: SIGHUP, reloaded the owner policy: ${policyLine(started.reload(reread()))}\n`)
    } catch (err) {
      process.stderr.write(`vgrid: SIGHUP, kept the owner policy in force: ${(err as Error).message}\n`)
    }
  })
  // Last: whoever sees the banner may signal at once, and a signal that came before the
  // handlers would kill the agent without its stop (a loaded test machine saw it happen).
  process.stdout.write(banner(agent, config.policy.acceptFrom))
  return await new Promise<never>(() => {})
}
