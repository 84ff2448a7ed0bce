/**
 * What the check of an executor's copy before each reuse costs (issue 15, part 6), on a
 * workspace of 10,000 small files in 100 directories:
 * - the check alone, in this process, against the copy's tree and stat cache (median of 20),
 *   beside its floor (one lstat per file and nothing else) and a stat-cache rescan of the same
 *   tree (what the outputs scan after each command costs);
 * - `vrun true` when nothing changed on either side, end to end on a two-agent loopback grid,
 *   against `vrun --no-sync true` (median of 10): the target of 300 ms is for the whole run.
 */
import fs, { lstatSync } from 'node:fs'
import path from 'node:path'
import { randomFillSync } from 'node:crypto'
import { checkCopy, scanWorkspace, StatCache, StatWorker } from '../src/fs-sync/index.js'
import { BIN, startGrid, stopAll, tempDir } from '../test/helpers/procs.js'
import { median, timeCommand, timeRepeated } from './stats.js'
import type { Figure } from './grid-vrun.js'

const FILES = 10_000
const PER_DIR = 100
const IN_PROCESS_RUNS = 20
const VRUN_RUNS = 10

function generate (dir: string): void {
  for (let i = 0; i < FILES; i++) {
    const sub = path.join(dir, 'src', `m${Math.floor(i / PER_DIR)}`)
    if (i % PER_DIR === 0) fs.mkdirSync(sub, { recursive: true })
    const b = Buffer.allocUnsafe(512 + ((i * 7919) % 6000))
    randomFillSync(b)
    fs.writeFileSync(path.join(sub, `f${i}.txt`), b)
  }
}

/** Every file's path, for the floor: one lstat each and nothing else. */
function listFiles (dir: string): string[] {
  return fs.readdirSync(path.join(dir, 'src')).flatMap((d) => fs.readdirSync(path.join(dir, 'src', d)).map((f) => path.join(dir, 'src', d, f)))
}

async function waitUntil (ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('the stat worker did not start')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

async function timeMs (fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}

export async function benchCopyCheck (): Promise<Figure[]> {
  const ws = tempDir('vgrid-bench-check-')
  generate(ws)
  const r1 = (x: number): number => Math.round(x * 10) / 10

  // In process: the tree and the stat cache as the copy's outputs scan leaves them.
  const cache = StatCache.empty(undefined, { racyMarginMs: 0 })
  const { tree } = await scanWorkspace(ws, { statCache: cache })
  // Interleaved, so a machine whose load changes meanwhile weighs on all three alike.
  const checks: number[] = []
  const threaded: number[] = []
  const rescans: number[] = []
  const floors: number[] = []
  const files = listFiles(ws)
  const statWorker = StatWorker.start()
  if (statWorker === undefined) throw new Error('run the bench from dist/: the stat worker needs compiled JavaScript')
  await waitUntil(() => statWorker.available)
  for (let i = 0; i < IN_PROCESS_RUNS; i++) {
    checks.push(await timeMs(async () => {
      const c = await checkCopy(ws, tree, { statCache: cache })
      if (!('changed' in c) || c.changed.length !== 0) throw new Error(`the unchanged copy was found changed: ${JSON.stringify(c).slice(0, 200)}`)
    }))
    threaded.push(await timeMs(async () => await checkCopy(ws, tree, { statCache: cache, statWorker })))
    rescans.push(await timeMs(async () => await scanWorkspace(ws, { statCache: cache })))
    floors.push(await timeMs(async () => { for (const f of files) lstatSync(f, { bigint: true }) }))
  }
  fs.appendFileSync(path.join(ws, 'src', 'm7', 'f700.txt'), 'x')
  fs.writeFileSync(path.join(ws, 'src', 'm9', 'stray.txt'), 'x')
  fs.rmSync(path.join(ws, 'src', 'm11', 'f1100.txt'))
  const changed = await checkCopy(ws, tree, { statCache: cache })
  if (!('changed' in changed) || changed.changed.length !== 3) throw new Error(`expected 3 changes, got ${JSON.stringify(changed)}`)
  const checksChanged = await timeRepeated(IN_PROCESS_RUNS, async () => await timeMs(async () => await checkCopy(ws, tree, { statCache: cache, statWorker })))
  await statWorker.close()
  fs.rmSync(path.join(ws, 'src', 'm9', 'stray.txt'))
  fs.writeFileSync(path.join(ws, 'src', 'm11', 'f1100.txt'), 'back')

  const [a, b] = await startGrid(2)
  try {
    const env = { ...process.env, VGRID_HOME: a.home }
    const on = ['--on', b.peer]
    await timeCommand(process.execPath, [BIN.vrun, '--quiet', ...on, 'true'], env, ws)
    const unchanged = await timeRepeated(VRUN_RUNS, async () => await timeCommand(process.execPath, [BIN.vrun, '--quiet', ...on, 'true'], env, ws))
    const noSync = await timeRepeated(VRUN_RUNS, async () => await timeCommand(process.execPath, [BIN.vrun, '--no-sync', ...on, 'true'], env, ws))
    const over = median(unchanged) - median(noSync)
    return [
      { name: `copy check, ${FILES.toLocaleString('en')} files unchanged, one thread, median`, value: r1(median(checks)), unit: 'ms' },
      { name: 'copy check, the same with the stat worker (as agents run it), median', value: r1(median(threaded)), unit: 'ms' },
      { name: 'copy check, 3 of them changed, with the stat worker, median', value: r1(median(checksChanged)), unit: 'ms' },
      { name: 'floor: one lstat per file alone, median', value: r1(median(floors)), unit: 'ms' },
      { name: 'stat-cache rescan of the same tree, median (for scale)', value: r1(median(rescans)), unit: 'ms' },
      { name: `vrun true, ${FILES.toLocaleString('en')} files, nothing changed, median`, value: Math.round(median(unchanged)), unit: 'ms', target: '<= 300', ok: median(unchanged) <= 300 },
      { name: 'vrun --no-sync true, median', value: Math.round(median(noSync)), unit: 'ms' },
      { name: 'nothing changed: over the no-sync time', value: Math.round(over), unit: 'ms' }
    ]
  } finally {
    await stopAll()
    fs.rmSync(ws, { recursive: true, force: true })
  }
}
