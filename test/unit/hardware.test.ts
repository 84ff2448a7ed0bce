import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os, { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it, vi } from 'vitest'
import {
  detectGpus, detectResources, parseNvidiaSmiCsv, parseRocmSmiJson, startCpuSampler
} from '../../src/agent/hardware.js'
import { FAKE_NVIDIA_SMI, fakeGpuPath } from '../helpers/fake-gpus.js'

const MIB = 2 ** 20
const quiet = (): void => {}
const empty = mkdtempSync(join(tmpdir(), 'vgrid-nopath-'))
afterAll(() => { rmSync(empty, { recursive: true, force: true }) })

/** An environment whose PATH has no GPU tools at all. */
const noGpuEnv = { ...process.env, PATH: empty }

function fakeEnv (gpus: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, ...fakeGpuPath(gpus), ...extra }
}

describe('detectResources on this machine', () => {
  it('returns sane values and no GPUs without nvidia-smi', async () => {
    const t0 = performance.now()
    const r = await detectResources({ env: noGpuEnv, log: quiet })
    const ms = performance.now() - t0
    console.log(`detectResources: ${ms.toFixed(0)} ms`, JSON.stringify(r))
    expect(r.host).toBe(os.hostname())
    expect(r.cpu.cores).toBeGreaterThanOrEqual(1)
    expect(r.cpu.cores).toBeLessThanOrEqual(os.cpus().length || 1)
    expect(r.cpu.model).not.toBe('')
    expect(r.memBytes).toBeGreaterThan(0)
    expect(r.memBytes).toBeLessThanOrEqual(os.totalmem())
    expect(r.os.platform).toBe(os.platform())
    expect(r.os.arch).not.toBe('')
    expect(r.gpus).toEqual([])
    console.log(`probed in ${ms} ms`)
  })
})

describe('NVIDIA GPUs through nvidia-smi', () => {
  it.each([
    ['', []],
    ['A100-SXM4-80GB:81920', [['A100-SXM4-80GB', 81920]]],
    ['A100-SXM4-80GB:81920,RTX 4090:24564', [['A100-SXM4-80GB', 81920], ['RTX 4090', 24564]]],
    ['H100 80GB HBM3:81559,H100 80GB HBM3:81559,A100-SXM4-40GB:40960,A100-SXM4-40GB:40960,' +
      'RTX 4090:24564,RTX 4090:24564,Tesla T4:15360,NVIDIA GeForce GTX 1080 Ti:11264',
    [['H100 80GB HBM3', 81559], ['H100 80GB HBM3', 81559], ['A100-SXM4-40GB', 40960], ['A100-SXM4-40GB', 40960],
      ['RTX 4090', 24564], ['RTX 4090', 24564], ['Tesla T4', 15360], ['NVIDIA GeForce GTX 1080 Ti', 11264]]]
  ])('finds %j', async (spec, expected) => {
    const r = await detectResources({ env: fakeEnv(spec), log: quiet })
    expect(r.gpus).toEqual(expected.map(([model, mib], index) => ({
      index,
      vendor: 'nvidia',
      model,
      memoryBytes: (mib as number) * MIB,
      uuid: `GPU-fa4e0000-0000-4000-8000-${String(index).padStart(12, '0')}`
    })))
  })

  it('runs the tool given as a path', async () => {
    const gpus = await detectGpus({ nvidiaSmi: FAKE_NVIDIA_SMI, rocmSmi: false, env: { ...noGpuEnv, VGRID_FAKE_GPUS: 'T4:15360' }, log: quiet })
    expect(gpus.map(g => g.model)).toEqual(['T4'])
  })

  it.each(['garbage', 'fail'])('finds none when nvidia-smi answers with %s, and says why', async mode => {
    const logged: string[] = []
    const gpus = await detectGpus({ env: fakeEnv('T4:15360', { VGRID_FAKE_SMI_MODE: mode }), log: m => logged.push(m) })
    expect(gpus).toEqual([])
    expect(logged.join('\n')).toMatch(mode === 'garbage' ? /skipping malformed line/ : /nvidia-smi: Command failed/)
  })

  it('finds none, quickly, when nvidia-smi hangs', async () => {
    const logged: string[] = []
    const t0 = performance.now()
    const gpus = await detectGpus({ env: fakeEnv('T4:15360', { VGRID_FAKE_SMI_MODE: 'hang' }), smiTimeoutMs: 200, log: m => logged.push(m) })
    expect(gpus).toEqual([])
    // The log line proves the 200 ms kill; the time is printed, not asserted (a busy machine spawns slowly).
    console.log(`a hanging nvidia-smi gave up after ${Math.round(performance.now() - t0)} ms`)
    expect(logged.join('\n')).toMatch(/killed after 200 ms/)
  })

  it('finds none when nvidia-smi is missing, and says so', async () => {
    const logged: string[] = []
    expect(await detectGpus({ env: noGpuEnv, log: m => logged.push(m) })).toEqual([])
    expect(logged).toContain('nvidia-smi: not found; assuming no GPUs')
  })

  it('finds none when the output is past the size cap', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vgrid-bigsmi-'))
    try {
      const tool = join(dir, 'nvidia-smi')
      writeFileSync(tool, '#!/bin/sh\nhead -c 2000000 /dev/zero | tr "\\0" x\n', { mode: 0o755 })
      expect(await detectGpus({ nvidiaSmi: tool, rocmSmi: false, log: quiet })).toEqual([])
    } finally { rmSync(dir, { recursive: true, force: true }) }
  })
})

describe('parseNvidiaSmiCsv', () => {
  it('reads real output and skips malformed lines', () => {
    const out = [
      '0, GPU-3b3b0f1e-5c4f-1a2b-9c8d-0123456789ab, NVIDIA A100-SXM4-80GB, 81920, 3, 0',
      '',
      'garbage',
      '1, GPU-aaaa, NVIDIA H100, [N/A], 0, 0', // memory unknown: skipped
      'x, GPU-bbbb, NVIDIA H100, 81559, 0, 0', // index not a number
      '0, GPU-cccc, Duplicate, 1024, 0, 0', // index seen already
      '3, [N/A], Odd, Name, With Commas, 2048, [N/A], [N/A]',
      '2, GPU-dddd, \u0007 Bell\u001b[31m , 4096, 0, 0',
      '-1, GPU-eeee, Negative, 1, 0, 0',
      '1024, GPU-ffff, Past the highest index, 1, 0, 0',
      '4, GPU-9999, , 1, 0, 0' // no name
    ].join('\r\n')
    expect(parseNvidiaSmiCsv(out, quiet)).toEqual([
      { index: 0, vendor: 'nvidia', model: 'NVIDIA A100-SXM4-80GB', memoryBytes: 81920 * MIB, uuid: 'GPU-3b3b0f1e-5c4f-1a2b-9c8d-0123456789ab' },
      { index: 2, vendor: 'nvidia', model: 'Bell[31m', memoryBytes: 4096 * MIB, uuid: 'GPU-dddd' },
      { index: 3, vendor: 'nvidia', model: 'Odd,Name,With Commas', memoryBytes: 2048 * MIB }
    ])
  })

  it('is empty for empty output', () => {
    expect(parseNvidiaSmiCsv('', quiet)).toEqual([])
    expect(parseNvidiaSmiCsv('\n\n', quiet)).toEqual([])
  })
})

describe('parseRocmSmiJson', () => {
  it('reads cards and skips the rest', () => {
    const out = JSON.stringify({
      card1: { 'Card Series': 'AMD Instinct MI300X', 'VRAM Total Memory (B)': '205822885888', 'VRAM Total Used Memory (B)': '1' },
      card0: { 'Card series': 'Radeon RX 7900 XTX', 'VRAM Total Memory (B)': '25753026560' },
      card2: { 'VRAM Total Memory (B)': 'lots' },
      card3: { 'VRAM Total Memory (B)': '1024' },
      system: { 'Driver version': '6.7' }
    })
    expect(parseRocmSmiJson(out, quiet)).toEqual([
      { index: 0, vendor: 'amd', model: 'Radeon RX 7900 XTX', memoryBytes: 25753026560 },
      { index: 1, vendor: 'amd', model: 'AMD Instinct MI300X', memoryBytes: 205822885888 },
      { index: 3, vendor: 'amd', model: 'AMD GPU', memoryBytes: 1024 }
    ])
  })

  it.each(['', 'not json', '[]', 'null', '{"card0": 5}'])('is empty for %j', text => {
    expect(parseRocmSmiJson(text, quiet)).toEqual([])
  })
})

describe('startCpuSampler', () => {
  const cpu = (busy: number, idle: number): os.CpuInfo =>
    ({ model: 'x', speed: 1, times: { user: busy, nice: 0, sys: 0, idle, irq: 0 } })

  it('reports the busy share of ticks between samples', () => {
    vi.useFakeTimers()
    let ticks = [cpu(0, 0), cpu(0, 0)]
    const s = startCpuSampler({ intervalMs: 10, cpuTimes: () => ticks })
    try {
      expect(s.utilisation()).toBe(0)
      ticks = [cpu(100, 100), cpu(50, 150)] // 150 busy of 400
      expect(s.utilisation()).toBe(37.5) // before the first sample: since start
      vi.advanceTimersByTime(10)
      expect(s.utilisation()).toBe(37.5)
      ticks = [cpu(300, 100), cpu(250, 150)] // +400 busy, +0 idle
      expect(s.utilisation()).toBe(37.5) // until the next sample
      vi.advanceTimersByTime(10)
      expect(s.utilisation()).toBe(100)
      vi.advanceTimersByTime(10) // no ticks elapsed: keeps the last sample
      expect(s.utilisation()).toBe(100)
      ticks = [cpu(300, 300), cpu(250, 350)] // +400 idle
      vi.advanceTimersByTime(10)
      expect(s.utilisation()).toBe(0)
      ticks = [cpu(0, 0)] // a CPU went offline: sums shrink, sample skipped
      vi.advanceTimersByTime(10)
      expect(s.utilisation()).toBe(0)
      ticks = [cpu(100, 300)]
      vi.advanceTimersByTime(10)
      expect(s.utilisation()).toBe(25)
      s.stop()
      ticks = [cpu(1000, 300)]
      vi.advanceTimersByTime(100)
      expect(s.utilisation()).toBe(25) // stopped: no more samples
    } finally { s.stop(); vi.useRealTimers() }
  })

  it('works on the real counters and never keeps the process alive', () => {
    const s = startCpuSampler()
    const u = s.utilisation()
    expect(u).toBeGreaterThanOrEqual(0)
    expect(u).toBeLessThanOrEqual(100)
    s.stop()
  })
})
