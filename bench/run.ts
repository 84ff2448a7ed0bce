/**
 * `npm run bench`: runs the benchmarks, prints a table and writes one JSON file per
 * benchmark to bench/results/ (with the machine, so figures can be compared).
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ROOT, removeTempDirs } from '../test/helpers/procs.js'
import { benchGridVrun, type Figure } from './grid-vrun.js'
import { benchSync } from './sync.js'
import { benchCopyCheck } from './copy-check.js'
import { benchFastcdc } from './fastcdc.js'
import { benchStore } from './store.js'
import { benchTransport } from './transport.js'
import { benchPlane } from './plane.js'
import { benchTasks } from './tasks.js'
import { benchPlacement } from './placement.js'
import { benchScale } from './scale.js'
import { benchSandbox } from './sandbox.js'
import { benchSoak } from './soak.js'
import { benchStdio } from './stdio.js'

const BENCHES: Record<string, () => Promise<Figure[]>> = {
  'grid-vrun': benchGridVrun,
  transport: benchTransport,
  plane: benchPlane,
  sync: benchSync,
  'copy-check': benchCopyCheck,
  fastcdc: benchFastcdc,
  store: benchStore,
  tasks: benchTasks,
  placement: benchPlacement,
  scale: benchScale,
  sandbox: benchSandbox,
  stdio: benchStdio,
  soak: benchSoak
}

async function main (): Promise<void> {
  const only = process.argv.slice(2)
  const outDir = path.join(ROOT, 'bench', 'results')
  fs.mkdirSync(outDir, { recursive: true })
  let failed = false
  for (const [name, run] of Object.entries(BENCHES)) {
    if (only.length > 0 && !only.includes(name)) continue
    process.stdout.write(`\n== ${name}\n`)
    const figures = await run().finally(removeTempDirs)
    const w = Math.max(...figures.map((f) => f.name.length))
    for (const f of figures) {
      const mark = f.ok === undefined ? '' : f.ok ? '  ok' : '  MISSED'
      process.stdout.write(`${f.name.padEnd(w)}  ${String(f.value).padStart(8)} ${f.unit.padEnd(4)} ${f.target !== undefined ? `target ${f.target}` : ''}${mark}\n`)
      if (f.ok === false) failed = true
    }
    const result = {
      bench: name,
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memBytes: os.totalmem(), node: process.version, platform: `${os.platform()} ${os.release()}` },
      figures
    }
    fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(result, null, 2) + '\n')
  }
  process.stdout.write(`\nresults in ${path.relative(process.cwd(), outDir) || '.'}/\n`)
  if (failed) process.exitCode = 1
}

main().catch((err) => { console.error(err); process.exit(1) })
