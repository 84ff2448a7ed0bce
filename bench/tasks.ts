/**
 * Issue 4's figures on a three-agent loopback grid:
 * - 1,000 `vbatch true` tasks submitted through one agent's control socket (as the CLI
 *   sends them, 8 at a time): the submit rate, and tasks completed per second from the
 *   first submit to the last end;
 * - the time of one `vbatch true` through the real binary, for comparison;
 * - a 3-step pipeline (`--after-success`) of trivial steps: from one step's end to the next
 *   one's start, as the owner recorded them;
 * - a fan-out, `vbatch -N 300 --no-sync true` through the binary: tasks per second from the
 *   command's start to the last shard's end (issue 19: >= 150 here), beside its anchor: the
 *   same number of guest sandboxes started with no agent at all, which bounds it; and the
 *   machine's CPU time per shard, the agents' part of it apart (the rest: the shards'
 *   sandboxes and commands, the vbatch command); then the same fan-out again on the same
 *   agents, for how much of the first was their code still warming up.
 */
import fs from 'node:fs'
import os from 'node:os'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { startGrid, stopAll, tempDir, BIN } from '../test/helpers/procs.js'
import { connectAgent } from '../src/agent/control/client.js'
import type { BatchRequest, ControlReply } from '../src/protocol/control.js'
import { isFinal, type TaskRecord } from '../src/agent/tasks/types.js'
import { median, timeCommand, timeRepeated } from './stats.js'
import type { Figure } from './grid-vrun.js'
import { sandboxRate } from './sandbox.js'
import { cpuSnapshot, cpuSplit, machineCpuMs, type CpuSnapshot } from './cpu.js'

const TASKS = Number(process.env.BENCH_TASKS ?? 1000)
const CONCURRENCY = 8
const FAN_OUT = Number(process.env.BENCH_FAN_OUT ?? 300)

async function ask (home: string, req: unknown): Promise<ControlReply> {
  const { channel } = await connectAgent(home, 'bench')
  try {
    await channel.send(req)
    const reply = await channel.recv() as ControlReply
    if (reply.t === 'error') throw new Error(reply.error.message)
    return reply
  } finally {
    channel.destroy()
  }
}

function batch (ws: string, argv: string[], extra: Partial<BatchRequest> = {}): BatchRequest {
  return { spec: { argv, env: {}, cpus: 1, gpus: 0 }, workspace: { dir: ws, cwd: '' }, after: [], shards: 1, gang: false, retries: 0, ...extra }
}

async function records (home: string): Promise<TaskRecord[]> {
  const r = await ask(home, { t: 'task-list', all: true })
  if (r.t !== 'task-list') throw new Error('expected a task list')
  return r.tasks
}

/**
 * The tasks of `ids` (in submission order) that ended, once all have or at the deadline (a
 * stall is a figure too). Figures come from the records' own times, so how we learn of the
 * end does not change them; but listing a thousand records (from every member) again and
 * again loads the agents being measured. So we wait on the last task still open, which is
 * about the last to end, and list only when it has.
 */
async function until (home: string, ids: string[], timeoutMs: number): Promise<TaskRecord[]> {
  const deadline = Date.now() + timeoutMs
  const wanted = new Set(ids)
  for (;;) {
    const mine = (await records(home)).filter((t) => wanted.has(t.id))
    const ended = mine.filter((t) => isFinal(t.state))
    const done = new Set(ended.map((t) => t.id))
    const open = ids.filter((id) => !done.has(id))
    if (open.length === 0 || Date.now() > deadline) return ended
    await waitTask(home, open[open.length - 1]!, deadline - Date.now())
  }
}

/** Resolves when the task has ended, or after `ms`. */
async function waitTask (home: string, id: string, ms: number): Promise<void> {
  const { channel } = await connectAgent(home, 'bench')
  let timer: NodeJS.Timeout | undefined
  try {
    await channel.send({ t: 'task-wait', id })
    await Promise.race([channel.recv(), new Promise((resolve) => { timer = setTimeout(resolve, Math.max(0, ms)) })])
  } finally {
    clearTimeout(timer)
    channel.destroy()
  }
}

export async function benchTasks (): Promise<Figure[]> {
  const ws = tempDir('vgrid-bench-tasks-')
  fs.writeFileSync(path.join(ws, 'README'), 'a small workspace\n')
  const agents = await startGrid(3)
  const a = agents[0]!
  try {
    const env = { ...process.env, VGRID_HOME: a.home }
    const cli = await timeRepeated(10, async () => await timeCommand(process.execPath, [BIN.vbatch, 'true'], env, ws))

    const snap = (): CpuSnapshot[] => agents.map((x) => cpuSnapshot(x.proc.pid!))
    const ids: string[] = []
    const [tasksCpu0, tasksAgents0] = [machineCpuMs(), snap()]
    const t0 = performance.now()
    let next = 0
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < TASKS) {
        next++
        const r = await ask(a.home, { t: 'batch', batch: batch(ws, ['true']) })
        if (r.t !== 'batched') throw new Error('expected batched')
        ids.push(...r.ids)
      }
    }))
    const submitMs = performance.now() - t0
    const done = await until(a.home, ids, 180_000)
    const lastEnd = Math.max(...done.map((t) => t.ended ?? 0))
    const firstCreated = Math.min(...done.map((t) => t.created))
    const completedPerS = TASKS / ((lastEnd - firstCreated) / 1000)
    const failed = TASKS - done.filter((t) => t.state === 'succeeded').length
    const [taskCpu, taskAgents] = [(machineCpuMs() - tasksCpu0) / TASKS, agentsSplit(tasksAgents0, snap(), TASKS)]

    const steps = ['process', 'train', 'eval']
    const pipe: string[] = []
    for (const [i, name] of steps.entries()) {
      const r = await ask(a.home, { t: 'batch', batch: batch(ws, ['true'], { name, ...(i > 0 ? { after: [{ kind: 'success', name: steps[i - 1] }] } : {}) }) })
      if (r.t === 'batched') pipe.push(...r.ids)
    }
    const ran = (await until(a.home, pipe, 60_000)).sort((x, y) => (x.started ?? 0) - (y.started ?? 0))
    const gaps = ran.slice(1).map((t, i) => (t.started ?? 0) - (ran[i].ended ?? 0))
    const worstGap = ran.length === steps.length ? Math.max(...gaps) : NaN

    // The fan-out as a user types it, twice on the same agents: the target is the first's;
    // the second says how much of the first was the agents' code still warming up (V8
    // compiles a function once it is hot, and a function run once a task takes hundreds of
    // tasks to get there: the second still compiled 43 functions on the submitter, 0.5 s).
    const fanOut = async (): Promise<{ perS: number, failed: number, cpu: number, agents: { all: number, by: Record<string, number> } }> => {
      const [machine0, agents0] = [machineCpuMs(), snap()]
      // the records' clock is this machine's, as Date.now() is
      const start = Date.now()
      const fan = spawnSync(process.execPath, [BIN.vbatch, '-N', String(FAN_OUT), '--no-sync', 'true'], { env, cwd: ws, encoding: 'utf8' })
      if (fan.status !== 0) throw new Error(`vbatch -N ${FAN_OUT} exited ${fan.status}: ${fan.stderr}`)
      const shards = await until(a.home, fan.stdout.trim().split('\n'), 180_000)
      return {
        perS: FAN_OUT / ((Math.max(...shards.map((t) => t.ended ?? 0)) - start) / 1000),
        failed: FAN_OUT - shards.filter((t) => t.state === 'succeeded').length,
        cpu: (machineCpuMs() - machine0) / FAN_OUT,
        agents: agentsSplit(agents0, snap(), FAN_OUT)
      }
    }
    const fan = await fanOut()
    const again = await fanOut()
    // The anchor of the fan-out: the guests' sandboxes alone, with the grid stopped, as many
    // at a time as the grid ran (three members lending every core).
    await stopAll()
    const floor = await sandboxRate(FAN_OUT, 3 * os.availableParallelism()).catch((err: Error) => { process.stderr.write(`sandbox floor not measured: ${err.message}\n`); return undefined })
    return [
      { name: '`vbatch true` through the binary, median of 10', value: Math.round(median(cli)), unit: 'ms' },
      { name: `submit ${TASKS} tasks (control socket, ${CONCURRENCY} at a time)`, value: Math.round(TASKS / (submitMs / 1000)), unit: 'tasks/s' },
      { name: `completed tasks per second (${failed} did not succeed or end within 180 s)`, value: Math.round(completedPerS), unit: 'tasks/s', target: '>= 100', ok: completedPerS >= 100 && failed === 0 },
      { name: `${TASKS} tasks: machine CPU time per task (everything, kernel included)`, value: Math.round(taskCpu * 10) / 10, unit: 'ms' },
      ...perTask(`${TASKS} tasks: the three agents' CPU time per task`, taskAgents),
      { name: '3-step pipeline: upstream end to next start, worst of 2', value: worstGap, unit: 'ms', target: '<= 100', ok: worstGap <= 100 },
      { name: `vbatch -N ${FAN_OUT} --no-sync true through the binary, to the last end (${fan.failed} did not succeed)`, value: Math.round(fan.perS), unit: 'tasks/s', target: '>= 150', ok: fan.perS >= 150 && fan.failed === 0 },
      { name: `anchor: ${FAN_OUT} guest sandboxes of true alone (the agent's command line, ${3 * os.availableParallelism()} at a time, no agent)`, value: floor === undefined ? NaN : Math.round(floor.perS), unit: 'starts/s' },
      { name: 'anchor: machine CPU time per sandbox start (kernel included)', value: floor === undefined ? NaN : Math.round(floor.cpuMs * 10) / 10, unit: 'ms' },
      { name: 'fan-out over the sandboxes-alone anchor', value: floor === undefined ? NaN : Math.round(fan.perS / floor.perS * 100) / 100, unit: 'x' },
      { name: 'fan-out: machine CPU time per shard (everything, kernel included)', value: Math.round(fan.cpu * 10) / 10, unit: 'ms' },
      ...perTask('fan-out: the three agents\' CPU time per shard', fan.agents),
      { name: `the same fan-out again on the same agents (${again.failed} did not succeed)`, value: Math.round(again.perS), unit: 'tasks/s' },
      { name: 'the same fan-out again: machine CPU time per shard', value: Math.round(again.cpu * 10) / 10, unit: 'ms' },
      ...perTask('the same fan-out again: the three agents\' CPU time per shard', again.agents)
    ]
  } finally {
    await stopAll()
    fs.rmSync(ws, { recursive: true, force: true })
  }
}

/** The three agents' CPU between two snapshots, per task: in all, and by thread (cpu.ts), all agents together. */
function agentsSplit (before: CpuSnapshot[], after: CpuSnapshot[], tasks: number): { all: number, by: Record<string, number> } {
  const by: Record<string, number> = {}
  let all = 0
  before.forEach((b, i) => {
    for (const [k, ms] of Object.entries(cpuSplit(b, after[i]!))) { by[k] = (by[k] ?? 0) + ms / tasks; all += ms / tasks }
  })
  return { all, by }
}

/** A per-task CPU figure, then its main threads' and Node's threads' parts (V8's compiler and GC: an agent's code still warming up). */
function perTask (name: string, t: { all: number, by: Record<string, number> }): Figure[] {
  const r = (ms: number): number => Math.round(ms * 10) / 10
  return [
    { name, value: r(t.all), unit: 'ms' },
    ...Object.entries(t.by).filter(([, ms]) => ms >= 0.05).sort((x, y) => y[1] - x[1]).map(([k, ms]) => ({ name: `${name}: ${k}`, value: r(ms), unit: 'ms' }))
  ]
}
