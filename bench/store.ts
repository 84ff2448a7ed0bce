/**
 * Chunk store throughput: `put` of 1 GiB of 64 KiB chunks into a fresh store (awaited one by
 * one, as a receiver does, and flushed: into the page cache, nothing is fsynced), `get` of all
 * of them (each re-hashed) one at a time and 8 in flight, a put of chunks already present, and
 * the open of a store holding them. Best of RUNS, by wall clock and by the process's CPU time
 * (all threads: the writes run on libuv's pool): on a shared 2-core machine the CPU figure is
 * the one that compares from run to run.
 *
 *   npx tsc -p . && node dist/bench/store.js
 */
import { createHash, randomFillSync } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ChunkStore } from '../src/fs-sync/store.js'

export interface Figure { name: string, value: number, unit: string, target?: string, ok?: boolean }

const RUNS = 3
const TOTAL_BYTES = 1024 ** 3
const CHUNK_BYTES = 64 * 1024
const GET_IN_FLIGHT = 8
/** The brief's target for put: ~1 s per GiB into the page cache. */
const PUT_TARGET_GB_S = 1

interface Timing { wallMs: number, cpuMs: number }

async function best (fn: () => Promise<void>): Promise<Timing> {
  let wallMs = Infinity
  let cpuMs = Infinity
  for (let i = 0; i < RUNS; i++) {
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    await fn()
    wallMs = Math.min(wallMs, performance.now() - t0)
    const cpu = process.cpuUsage(cpu0)
    cpuMs = Math.min(cpuMs, (cpu.user + cpu.system) / 1000)
  }
  return { wallMs, cpuMs }
}

export async function benchStore (): Promise<Figure[]> {
  const n = TOTAL_BYTES / CHUNK_BYTES
  const data = new Uint8Array(TOTAL_BYTES)
  for (let at = 0; at < TOTAL_BYTES; at += 65536) randomFillSync(data, at, 65536)
  const chunks = Array.from({ length: n }, (_, i) => data.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES))
  const hashes = chunks.map((c) => createHash('sha256').update(c).digest())
  const root = mkdtempSync(join(tmpdir(), 'vgrid-bench-store-'))
  let store: ChunkStore | undefined
  try {
    let run = 0
    const put = await best(async () => {
      await store?.close()
      store = await ChunkStore.open(join(root, `s${run++}`))
      for (let i = 0; i < n; i++) await store.put(hashes[i]!, chunks[i]!)
      await store.flush()
    })
    const s = store!
    const again = await best(async () => { for (let i = 0; i < n; i++) await s.put(hashes[i]!, chunks[i]!) })
    const getSeq = await best(async () => {
      for (let i = 0; i < n; i++) if (await s.get(hashes[i]!) === undefined) throw new Error('a blob went missing')
    })
    const getPar = await best(async () => {
      let next = 0
      await Promise.all(Array.from({ length: GET_IN_FLIGHT }, async () => {
        while (next < n) if (await s.get(hashes[next++]!) === undefined) throw new Error('a blob went missing')
      }))
    })
    await s.close()
    const dir = join(root, `s${run - 1}`)
    const open = await best(async () => { await (await ChunkStore.open(dir)).close() })
    const hashOnly = await best(async () => { for (const c of chunks) createHash('sha256').update(c).digest() })

    const gbs = (ms: number): number => Math.round(TOTAL_BYTES / 1e6 / ms * 100) / 100
    const ms = (x: number): number => Math.round(x)
    return [
      { name: 'put 1 GiB of 64 KiB chunks + flush, wall', value: gbs(put.wallMs), unit: 'GB/s', target: `>= ${PUT_TARGET_GB_S}`, ok: gbs(put.wallMs) >= PUT_TARGET_GB_S },
      { name: 'put 1 GiB, CPU time', value: ms(put.cpuMs), unit: 'ms' },
      { name: 'put 1 GiB already present', value: ms(again.wallMs), unit: 'ms' },
      { name: 'get 1 GiB, one at a time, wall', value: gbs(getSeq.wallMs), unit: 'GB/s' },
      { name: 'get 1 GiB, one at a time, CPU time', value: ms(getSeq.cpuMs), unit: 'ms' },
      { name: `get 1 GiB, ${GET_IN_FLIGHT} in flight, wall`, value: gbs(getPar.wallMs), unit: 'GB/s' },
      { name: `open a store of ${n} blobs`, value: ms(open.wallMs), unit: 'ms' },
      { name: 'SHA-256 alone (floor of get)', value: gbs(hashOnly.wallMs), unit: 'GB/s' }
    ]
  } finally {
    await store?.close().catch(() => {})
    rmSync(root, { recursive: true, force: true })
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const f of await benchStore()) {
    const mark = f.ok === undefined ? '' : f.ok ? '  ok' : '  MISSED'
    process.stdout.write(`${f.name.padEnd(48)} ${String(f.value).padStart(8)} ${f.unit.padEnd(4)}${f.target !== undefined ? ` target ${f.target}` : ''}${mark}\n`)
  }
}
