/**
 * Issue 18's figure: what real pipes (exec/fifos.ts) cost a command against the socket pairs
 * Node makes, in one run, interleaved: the start of `true` to its end (medians of 200), and
 * 256 MiB of output through stdout.
 */
import { spawnPipes } from '../src/exec/spawn-pipes.js'
import { FifoMaker } from '../src/exec/fifos.js'
import { tempDir } from '../test/helpers/procs.js'
import { median } from './stats.js'
import path from 'node:path'
import type { Figure } from './grid-vrun.js'

const STARTS = 200
const OUTPUT_MIB = 256

async function once (file: string, argv: string[], fifos: FifoMaker | undefined): Promise<{ ms: number, bytes: number }> {
  let bytes = 0
  const t0 = process.hrtime.bigint()
  const pipes = fifos === undefined ? undefined : await fifos.stdio()
  const cmd = await spawnPipes({ file, argv, cwd: '/', env: { PATH: process.env.PATH ?? '' } }, async (_fd, data) => { bytes += data.length }, () => {}, pipes)
  cmd.end()
  await cmd.done
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, bytes }
}

export async function benchStdio (): Promise<Figure[]> {
  const fifos = new FifoMaker(path.join(tempDir('vgrid-bench-fifos-'), 'fifos'))
  fifos.warm()
  try {
    const sockets: number[] = []
    const pipes: number[] = []
    for (let i = 0; i < 10; i++) { await once('/bin/true', ['true'], undefined); await once('/bin/true', ['true'], fifos) }
    for (let i = 0; i < STARTS; i++) {
      sockets.push((await once('/bin/true', ['true'], undefined)).ms)
      pipes.push((await once('/bin/true', ['true'], fifos)).ms)
    }
    const out = ['head', '-c', String(OUTPUT_MIB * 2 ** 20), '/dev/zero']
    const rate = async (f: FifoMaker | undefined): Promise<number> => {
      const r = await once('/usr/bin/head', out, f)
      if (r.bytes !== OUTPUT_MIB * 2 ** 20) throw new Error(`read ${r.bytes} bytes`)
      return Math.round(r.bytes / 2 ** 20 / (r.ms / 1000))
    }
    const sockRates: number[] = []
    const pipeRates: number[] = []
    for (let i = 0; i < 3; i++) { sockRates.push(await rate(undefined)); pipeRates.push(await rate(fifos)) }
    const s = median(sockets)
    const p = median(pipes)
    return [
      { name: 'start of true to its end, socket pairs', value: Math.round(s * 100) / 100, unit: 'ms' },
      { name: 'start of true to its end, pipes (FIFOs)', value: Math.round(p * 100) / 100, unit: 'ms' },
      { name: 'what pipes add to a start', value: Math.round((p - s) * 100) / 100, unit: 'ms', target: '≤ 1 ms', ok: p - s <= 1 },
      { name: 'stdout throughput, socket pairs', value: median(sockRates), unit: 'MB/s' },
      { name: 'stdout throughput, pipes (FIFOs)', value: median(pipeRates), unit: 'MB/s' }
    ]
  } finally {
    fifos.close()
  }
}
