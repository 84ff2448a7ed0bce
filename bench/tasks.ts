/**
 * Issue 4's figures on a three-agent loopback grid:
 * - 1,000 `vbatch true` tasks submitted through one agent's control socket (as the CLI
 *   sends them, 8 at a time): the submit rate, and tasks completed per second from the
 *   first submit to the last end;
 * - the time of one `vbatch true` through the real binary, for comparison;
 * - a 3-step pipeline (`--after-success`) of trivial steps: from one step's end to the next
 *   one's start, as the owner recorded them.
 */
import fs from 'node:fs'
import path from 'node:path'
import { startGrid, stopAll, tempDir, BIN } from '../test/helpers/procs.js'
import { connectAgent } from '../src/agent/control/client.js'
import type { BatchRequest, ControlReply } from '../src/agent/control/protocol.js'
import { isFinal, type TaskRecord } from '../src/agent/tasks/types.js'
import { median, timeCommand, timeRepeated } from './stats.js'
import type { Figure } from './grid-vrun.js'

const TASKS = Number(process.env.BENCH_TASKS ?? 1000)
const CONCURRENCY = 8

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
 * The tasks of `ids` that ended, once all have or at the deadline (a stall is a figure too).
 * Figures come from the records' own times, so polling seldom loses nothing, and listing a
 * thousand records ten times a second would load the agent being measured.
 */
async function until (home: string, ids: Set<string>, timeoutMs: number): Promise<TaskRecord[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const mine = (await records(home)).filter((t) => ids.has(t.id))
    const ended = mine.filter((t) => isFinal(t.state))
    if (ended.length === ids.size || Date.now() > deadline) return ended
    await new Promise((resolve) => setTimeout(resolve, ids.size > 10 ? 1000 : 100))
  }
}

export async function benchTasks (): Promise<Figure[]> {
  const ws = tempDir('vgrid-bench-tasks-')
  fs.writeFileSync(path.join(ws, 'README'), 'a small workspace\n')
  const [a] = await startGrid(3)
  try {
    const env = { ...process.env, VGRID_HOME: a.home }
    const cli = await timeRepeated(10, async () => await timeCommand(process.execPath, [BIN.vbatch, 'true'], env, ws))

    const ids = new Set<string>()
    const t0 = performance.now()
    let next = 0
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < TASKS) {
        next++
        const r = await ask(a.home, { t: 'batch', batch: batch(ws, ['true']) })
        if (r.t !== 'batched') throw new Error('expected batched')
        for (const id of r.ids) ids.add(id)
      }
    }))
    const submitMs = performance.now() - t0
    const done = await until(a.home, ids, 180_000)
    const lastEnd = Math.max(...done.map((t) => t.ended ?? 0))
    const firstCreated = Math.min(...done.map((t) => t.created))
    const completedPerS = TASKS / ((lastEnd - firstCreated) / 1000)
    const failed = TASKS - done.filter((t) => t.state === 'succeeded').length

    const steps = ['process', 'train', 'eval']
    const pipe = new Set<string>()
    for (const [i, name] of steps.entries()) {
      const r = await ask(a.home, { t: 'batch', batch: batch(ws, ['true'], { name, ...(i > 0 ? { after: [{ kind: 'success', name: steps[i - 1] }] } : {}) }) })
      if (r.t === 'batched') r.ids.forEach((id) => pipe.add(id))
    }
    const ran = (await until(a.home, pipe, 60_000)).sort((x, y) => (x.started ?? 0) - (y.started ?? 0))
    const gaps = ran.slice(1).map((t, i) => (t.started ?? 0) - (ran[i].ended ?? 0))
    const worstGap = ran.length === steps.length ? Math.max(...gaps) : NaN
    return [
      { name: '`vbatch true` through the binary, median of 10', value: Math.round(median(cli)), unit: 'ms' },
      { name: `submit ${TASKS} tasks (control socket, ${CONCURRENCY} at a time)`, value: Math.round(TASKS / (submitMs / 1000)), unit: 'tasks/s' },
      { name: `completed tasks per second (${failed} did not succeed or end within 180 s)`, value: Math.round(completedPerS), unit: 'tasks/s', target: '>= 100', ok: completedPerS >= 100 && failed === 0 },
      { name: '3-step pipeline: upstream end to next start, worst of 2', value: worstGap, unit: 'ms', target: '<= 100', ok: worstGap <= 100 }
    ]
  } finally {
    await stopAll()
    fs.rmSync(ws, { recursive: true, force: true })
  }
}
