/**
 * FastCDC 2020 throughput: the cut loop alone (each engine, 256 MiB of random data in memory) and
 * cut + SHA-256 of a 300 MB file read from a warm page cache (chunkFile / chunkFileSync).
 * Figures are MB/s (10^6 bytes), best of RUNS, single thread, by wall clock and by the process's
 * CPU time: on a shared 2-core machine the CPU figure is the one that compares from run to run.
 *
 *   npx tsc -p . && node dist/bench/fastcdc.js
 */
import { randomFillSync } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { chunkBuffer, chunkFile, chunkFileSync, DEFAULT_CDC, type CdcEngine } from '../src/fs-sync/fastcdc.js'

export interface Figure { name: string, value: number, unit: string, target?: string, ok?: boolean }

const RUNS = 3
const BUFFER_BYTES = 256 * 1024 * 1024
const FILE_BYTES = 300 * 1000 * 1000
/** The target for cut + hash of a file (page cache warm). */
const FILE_TARGET_MB_S = 500

function random (n: number): Uint8Array {
  const b = new Uint8Array(n)
  for (let at = 0; at < n; at += 65536) randomFillSync(b, at, Math.min(65536, n - at))
  return b
}

/** Best wall and CPU milliseconds of RUNS runs. */
async function best (fn: () => unknown): Promise<{ wall: number, cpu: number }> {
  let wall = Infinity
  let cpu = Infinity
  for (let i = 0; i < RUNS; i++) {
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    await fn()
    wall = Math.min(wall, performance.now() - t0)
    const c = process.cpuUsage(c0)
    cpu = Math.min(cpu, (c.user + c.system) / 1000)
  }
  return { wall, cpu }
}

const mbs = (bytes: number, ms: number): number => Math.round(bytes / 1e6 / (ms / 1000))

function both (figures: Figure[], name: string, bytes: number, t: { wall: number, cpu: number }, target?: number): void {
  const wall = mbs(bytes, t.wall)
  figures.push({ name, value: wall, unit: 'MB/s', target: target === undefined ? undefined : `≥ ${target}`, ok: target === undefined ? undefined : wall >= target })
  figures.push({ name: `${name}, per CPU second`, value: mbs(bytes, t.cpu), unit: 'MB/s' })
}

export async function benchFastcdc (): Promise<Figure[]> {
  const figures: Figure[] = []
  const engines: CdcEngine[] = ['wasm', 'js']
  const data = random(BUFFER_BYTES)
  for (const engine of engines) {
    chunkBuffer(data.subarray(0, 8 << 20), DEFAULT_CDC, engine) // warm up the JIT
    both(figures, `cut 256 MiB in memory (${engine})`, data.length, await best(() => chunkBuffer(data, DEFAULT_CDC, engine)))
  }
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-bench-cdc-'))
  try {
    const path = join(dir, 'big')
    writeFileSync(path, random(FILE_BYTES)) // and so into the page cache
    for (const engine of engines) {
      both(figures, `chunkFile 300 MB, cut + SHA-256 (${engine})`, FILE_BYTES,
        await best(async () => await chunkFile(path, DEFAULT_CDC, { engine })), FILE_TARGET_MB_S)
      both(figures, `chunkFileSync 300 MB (${engine})`, FILE_BYTES, await best(() => chunkFileSync(path, DEFAULT_CDC, { engine })))
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  return figures
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const f of await benchFastcdc()) {
    process.stdout.write(`${f.name.padEnd(56)} ${String(f.value).padStart(6)} ${f.unit}${f.target !== undefined ? `  target ${f.target}` : ''}\n`)
  }
}
