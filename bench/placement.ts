/**
 * Issue 5's placement figure on a 4-agent loopback grid: the time from a `vrun` reaching its
 * agent (a `run` request on the control socket, as the CLI sends it) to the command having
 * started on the member that runs it (the executor's `started` event), alone and under 50
 * concurrent submissions spread over the four agents. The commands ask for 0 cores (an agent
 * lends at most the cores its machine has, 2 here), so the 50 fit at once: the figure is
 * placement (view, draw, claims, go, spawn), not waiting for a free core. A floor follows,
 * measured once the agents are stopped: the same 50 process starts from processes of the
 * agents' size, with nothing else (spawn-floor.ts).
 */
import { startGrid, stopAll } from '../test/helpers/procs.js'
import { connectAgent } from '../src/agent/control/client.js'
import fs from 'node:fs'
import { availableParallelism } from 'node:os'
import { machineCpuMs } from './cpu.js'
import { median, percentile } from './stats.js'
import { spawnFloor } from './spawn-floor.js'
import type { Figure } from './grid-vrun.js'

const UNLOADED_RUNS = 30
const CONCURRENT = 50
const LOADED_ROUNDS = 4

/** Submits `true` through `home`'s control socket; ms from the request to `started`. */
async function placeOne (home: string): Promise<number> {
  const { channel } = await connectAgent(home, 'bench')
  try {
    const t0 = performance.now()
    await channel.send({ t: 'run', spec: { argv: ['true'], env: {}, cpus: 0, gpus: 0 } })
    await channel.send({ t: 'eof' })
    let started: number | undefined
    for (;;) {
      const m = await channel.recv() as { t: string, error?: { message: string } } | undefined
      if (m === undefined) throw new Error('the agent closed the run before it ended')
      if (m.t === 'started') started ??= performance.now() - t0
      if (m.t === 'queued' && process.env.BENCH_DEBUG !== undefined) console.error('queued', m)
      if (m.t === 'error') throw new Error(m.error?.message)
      if (m.t === 'exit') break
    }
    if (started === undefined) throw new Error('the run ended without starting')
    return started
  } finally {
    channel.destroy()
  }
}

/** Resident size of a process, MiB. */
function rssMib (pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
}

export async function benchPlacement (): Promise<Figure[]> {
  const agents = await startGrid(4)
  let figures: Figure[]
  let agentMib = 0
  try {
    const homes = agents.map((a) => a.home)
    for (let i = 0; i < 5; i++) await placeOne(homes[i % homes.length]) // warm up
    const alone: number[] = []
    for (let i = 0; i < UNLOADED_RUNS; i++) alone.push(await placeOne(homes[i % homes.length]))
    const loaded: number[] = []
    // What bounds the loaded figure: the machine's CPU per placement, and what the 50 of a
    // round cost over this machine's cores (the queue the last of them waits in).
    const cpu0 = machineCpuMs()
    for (let r = 0; r < LOADED_ROUNDS; r++) {
      loaded.push(...await Promise.all(Array.from({ length: CONCURRENT }, async (_, i) => await placeOne(homes[i % homes.length]))))
    }
    const cpuEach = (machineCpuMs() - cpu0) / (LOADED_ROUNDS * CONCURRENT)
    const over = median(loaded) - median(alone)
    for (const a of agents) agentMib = Math.max(agentMib, rssMib(a.proc.pid!))
    figures = [
      { name: 'placement, submit to started, alone: median', value: r1(median(alone)), unit: 'ms' },
      { name: 'placement, submit to started, alone: p99', value: r1(percentile(alone, 99)), unit: 'ms' },
      { name: `placement under ${CONCURRENT} concurrent submissions: median`, value: r1(median(loaded)), unit: 'ms' },
      { name: `placement under ${CONCURRENT} concurrent submissions: p99`, value: r1(percentile(loaded, 99)), unit: 'ms' },
      { name: 'median under load over the median alone', value: r1(over), unit: 'ms', target: '<= 20', ok: over <= 20 },
      { name: 'machine CPU time per placement under load (agents, sandbox, command)', value: r1(cpuEach), unit: 'ms' },
      { name: `the ${CONCURRENT} of a round over this machine's ${availableParallelism()} cores`, value: r1(cpuEach * CONCURRENT / availableParallelism()), unit: 'ms' }
    ]
  } finally {
    await stopAll()
  }
  // The same machine, the agents gone: what the 50 process starts alone cost.
  const floor = await spawnFloor(agentMib)
  return [
    ...figures,
    { name: `floor: \`true\` started from 4 processes of ${Math.round(agentMib)} MiB, alone: median`, value: r1(floor.alone), unit: 'ms' },
    { name: `floor: the same, ${CONCURRENT} at once: median over alone`, value: r1(floor.loaded - floor.alone), unit: 'ms' }
  ]
}

function r1 (x: number): number {
  return Math.round(x * 10) / 10
}
