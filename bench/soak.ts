/**
 * Issue 16's "no growth": BENCH_SOAK_TASKS (default 20,000) `true` tasks through a
 * three-agent loopback grid, submitted to the first agent's control socket as `vbatch -N
 * BENCH_SOAK_FANOUT` sends them (each shard a real task, placed and run by the agents), a
 * few fan-outs in flight at once. After the first BENCH_SOAK_FIRST (default 1,000) and again
 * at the end, each agent's RSS and heap in use, measured by the agent itself right after a
 * full garbage collection (VGRID_DEBUG_GC, agent/memory.ts) so the two points compare what
 * is kept, not what is not yet collected. Target: RSS grows by at most 20 % from the first
 * point to the last; and every table the agents keep for work in progress is empty at the end.
 * Then the owner's task journal (`tasks/records.jsonl`): its size as the
 * run left it and once compacted (as the agent's next start would).
 *
 * BENCH_SOAK_TASKS=3000 gives a quick run. BENCH_SOAK_SNAPSHOTS=DIR has each agent write a
 * heap snapshot to DIR at both points (Node's --heapsnapshot-signal), to see what grew; the
 * heap figures still hold, but writing a snapshot leaves the agent's RSS ~100 MB larger, so
 * the RSS growth of such a run means nothing. BENCH_SOAK_DEBUG=1 prints, at both points, where
 * each agent's memory is: V8's heap (total), external memory, and the kernel's split of RSS
 * into anonymous and file-backed pages.
 */
import fs from 'node:fs'
import path from 'node:path'
import { startGrid, stopAll, tempDir, waitFor, type AgentProc } from '../test/helpers/procs.js'
import { call } from '../src/agent/control/client.js'
import type { BatchRequest } from '../src/protocol/control.js'
import { RecordJournal, JOURNAL_NAME } from '../src/agent/tasks/journal.js'
import { DEBUG_GC_ENV } from '../src/agent/memory.js'
import type { Figure } from './grid-vrun.js'

const TASKS = Number(process.env.BENCH_SOAK_TASKS ?? 20_000)
const FIRST = Math.min(TASKS, Number(process.env.BENCH_SOAK_FIRST ?? 1_000))
const FANOUT = Number(process.env.BENCH_SOAK_FANOUT ?? 100)
/** Fan-outs submitted and not yet ended: enough to keep every core of the grid busy. */
const IN_FLIGHT = 4
const GROWTH_TARGET_PERCENT = 20
/** What an agent does just after a batch of work (gossip of its load, closing streams) settles in this. */
const SETTLE_MS = 3_000
const MiB = 2 ** 20
const SNAPSHOTS = process.env.BENCH_SOAK_SNAPSHOTS
const DEBUG = process.env.BENCH_SOAK_DEBUG === '1'

interface Point { rss: number, heap: number, inFlight: Record<string, number> }

function batch (ws: string, shards: number): BatchRequest {
  return { spec: { argv: ['true'], env: {}, cpus: 1, gpus: 0 }, workspace: { dir: ws, cwd: '' }, after: [], shards, gang: false, retries: 0 }
}

/**
 * Runs `count` tasks through `a`, in named fan-outs of FANOUT, IN_FLIGHT of them at a time,
 * each waited for whole (`vgrid task wait NAME`); returns how many did not succeed.
 */
async function runTasks (a: AgentProc, ws: string, count: number, names: { next: number }): Promise<number> {
  let submitted = 0
  let failed = 0
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (submitted < count) {
      const n = Math.min(FANOUT, count - submitted)
      submitted += n
      const name = `soak-${names.next++}`
      await call(a.home, { t: 'batch', batch: { ...batch(ws, n), name } }, { client: 'bench' })
      const { task, shards } = await call(a.home, { t: 'task-wait', id: name, workspace: ws }, { client: 'bench' })
      failed += (shards ?? [task]).filter((t) => t.state !== 'succeeded').length
    }
  }))
  return failed
}

/** Has the agent write a heap snapshot to `dir`; resolves once the file is complete. */
async function snapshot (a: AgentProc, dir: string): Promise<void> {
  const mine = (): string[] => fs.readdirSync(dir).filter((f) => f.includes(`.${a.proc.pid}.`))
  const before = mine().length
  a.proc.kill('SIGUSR2')
  let size = -1
  await waitFor(async () => {
    const files = mine()
    if (files.length === before) return false
    const now = fs.statSync(path.join(dir, files.sort().at(-1)!)).size
    const stable = now === size
    size = now
    // the agent's main thread writes it: once it answers again, the file is whole
    return stable && await call(a.home, { t: 'status' }, { client: 'bench' }).then(() => true, () => false)
  }, 'a heap snapshot', 300_000, 1_000)
}

async function measure (agents: AgentProc[]): Promise<Point[]> {
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
  return await Promise.all(agents.map(async (a) => {
    const { status } = await call(a.home, { t: 'status', settle: true }, { client: 'bench', timeoutMs: 30_000 })
    const u = status.usage
    if (u === undefined || !u.settled) throw new Error('the agent did not measure its memory after a collection: is VGRID_DEBUG_GC=1 passed on?')
    const point = { rss: u.rssBytes, heap: u.heapUsedBytes, inFlight: u.inFlight ?? {} }
    if (DEBUG) {
      const st = fs.readFileSync(`/proc/${a.proc.pid}/status`, 'utf8').split('\n').filter((l) => /^(VmRSS|RssAnon|RssFile|RssShmem|VmData|Threads)/.test(l)).join(' ')
      console.log(`pid ${a.proc.pid}: heapTotal ${Math.round(u.heapTotalBytes / MiB)} external ${Math.round(u.externalBytes / MiB)} ab ${Math.round(u.arrayBuffersBytes / MiB)} | ${st.replace(/\s+/g, ' ')}`)
    }
    if (SNAPSHOTS !== undefined) {
      await snapshot(a, SNAPSHOTS)
    }
    return point
  }))
}

export async function benchSoak (): Promise<Figure[]> {
  const ws = tempDir('vgrid-bench-soak-')
  fs.writeFileSync(path.join(ws, 'README'), 'a small workspace\n')
  const snapshots: Record<string, string> = SNAPSHOTS !== undefined ? { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${SNAPSHOTS}` } : {}
  const agents = await startGrid(3, { env: { [DEBUG_GC_ENV]: '1', ...snapshots } })
  const owner = agents[0]!
  try {
    const t0 = performance.now()
    const names = { next: 0 }
    let failed = await runTasks(owner, ws, FIRST, names)
    const first = await measure(agents)
    failed += await runTasks(owner, ws, TASKS - FIRST, names)
    const seconds = (performance.now() - t0) / 1000
    const last = await measure(agents)
    const journal = path.join(owner.home, 'tasks', JOURNAL_NAME)
    const journalBytes = fs.statSync(journal).size
    await stopAll()
    // what the owner's next start would compact it to
    const { journal: reopened, entries } = RecordJournal.open(path.dirname(journal))
    reopened.close()
    const compactedBytes = fs.statSync(journal).size
    const figures: Figure[] = [
      { name: `${TASKS} tasks in fan-outs of ${FANOUT} (${failed} did not succeed)`, value: Math.round(TASKS / seconds), unit: 'tasks/s', ok: failed === 0 }
    ]
    agents.forEach((_, i) => {
      const growth = (last[i]!.rss / first[i]!.rss - 1) * 100
      const role = i === 0 ? 'agent 1 (owner)' : `agent ${i + 1}`
      figures.push(
        { name: `${role}: RSS after ${FIRST} tasks`, value: Math.round(first[i]!.rss / MiB), unit: 'MiB' },
        { name: `${role}: RSS after ${TASKS} tasks`, value: Math.round(last[i]!.rss / MiB), unit: 'MiB' },
        { name: `${role}: RSS growth`, value: Math.round(growth * 10) / 10, unit: '%', target: `<= ${GROWTH_TARGET_PERCENT}`, ok: growth <= GROWTH_TARGET_PERCENT },
        { name: `${role}: heap in use after ${FIRST} tasks`, value: Math.round(first[i]!.heap / MiB), unit: 'MiB' },
        { name: `${role}: heap in use after ${TASKS} tasks`, value: Math.round(last[i]!.heap / MiB), unit: 'MiB' }
      )
      // every task has ended: what the agent still holds for work in progress is kept for nothing
      const held = Object.entries(last[i]!.inFlight).filter(([, n]) => n > 0)
      figures.push({ name: `${role}: entries left in tables of work in progress${held.length > 0 ? ` (${held.map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}`, value: held.reduce((s, [, n]) => s + n, 0), unit: '', target: '0', ok: held.length === 0 })
    })
    figures.push(
      { name: 'owner task journal at the end', value: Math.round(journalBytes / MiB * 10) / 10, unit: 'MiB' },
      { name: `owner task journal compacted (${entries.length} records)`, value: Math.round(compactedBytes / MiB * 10) / 10, unit: 'MiB' }
    )
    return figures
  } finally {
    await stopAll()
    fs.rmSync(ws, { recursive: true, force: true })
  }
}
