/**
 * What this machine has: host, OS, CPU, memory and GPUs, read once when the agent starts, and
 * a cheap sampler of CPU utilisation for the load it gossips.
 *
 * GPUs come from the vendors' tools, not from systeminformation's graphics(): that one lists
 * cards through lspci and reports none where lspci is missing (minimal images, some VMs).
 * `nvidia-smi` is the authoritative list for NVIDIA; `rocm-smi` is a best-effort one for AMD.
 * A missing, failing or hung tool means "no GPUs of that vendor", never a failed start.
 */
import { execFile } from 'node:child_process'
import os from 'node:os'
import { createLogger } from '../common/log.js'
import type { GpuInfo, Resources } from '../grid/types.js'
import { MAX_GPUS, MAX_GPU_INDEX } from '../common/resources.js'

/** nvidia-smi can stall for seconds while the driver wakes a GPU; longer means it is stuck. */
export const NVIDIA_SMI_TIMEOUT_MS = 5_000
export const SMI_MAX_OUTPUT_BYTES = 1024 * 1024
/** Each systeminformation call; on expiry the node:os value is used instead. */
export const SI_TIMEOUT_MS = 5_000
export const CPU_SAMPLE_INTERVAL_MS = 2_000

export const NVIDIA_SMI_ARGS = [
  '--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu',
  '--format=csv,noheader,nounits'
]
export const ROCM_SMI_ARGS = ['--showproductname', '--showmeminfo', 'vram', '--json']

const MIB = 1024 * 1024

export interface DetectOptions {
  /** The nvidia-smi to run: a path, or a name looked up on PATH (default `nvidia-smi`). */
  nvidiaSmi?: string
  /** The rocm-smi to run (default `rocm-smi`); `false` skips AMD detection. */
  rocmSmi?: string | false
  /** Limit for each GPU tool (default NVIDIA_SMI_TIMEOUT_MS); tests make it short. */
  smiTimeoutMs?: number
  /** Environment of the GPU tools, PATH included (default process.env). */
  env?: NodeJS.ProcessEnv
  /** Diagnostics (default: the `vgrid:hardware` debug logger). */
  log?: (msg: string) => void
}

/** Reads the machine; every part falls back (node:os, no GPUs) rather than fail. */
export async function detectResources (opts: DetectOptions = {}): Promise<Resources> {
  const log = opts.log ?? debugLog
  // systeminformation costs ~50 ms to import: only the agent's start pays it
  const si = await import('systeminformation').then(m => m.default, () => undefined)
  const [cpu, osInfo, mem, gpus] = await Promise.all([
    siCall(log, 'cpu', () => si?.cpu()),
    siCall(log, 'osInfo', () => si?.osInfo()),
    siCall(log, 'mem', () => si?.mem()),
    detectGpus(opts)
  ])

  const brand = (cpu?.brand ?? '').trim()
  const maker = (cpu?.manufacturer ?? '').trim()
  const siModel = brand.startsWith(maker) ? brand : `${maker} ${brand}`.trim()
  // the process's CPU affinity (taskset, cpusets) is what its tasks can really use
  const cores = Math.max(1, Math.min(cpu?.cores || os.cpus().length || 1, os.availableParallelism()))

  // a cgroup memory limit (containers) is what we can really use; unlimited reads as 2^64
  const total = mem?.total || os.totalmem()
  const constrained = process.constrainedMemory?.() ?? 0
  const memBytes = constrained > 0 && constrained < total ? constrained : total

  return {
    host: os.hostname(),
    os: {
      platform: osInfo?.platform || os.platform(),
      distro: osInfo?.distro || os.type(),
      release: osInfo?.release || os.release(),
      arch: osInfo?.arch || os.arch()
    },
    cpu: { model: siModel || os.cpus()[0]?.model?.trim() || 'unknown', cores },
    memBytes,
    gpus
  }
}

/** NVIDIA GPUs, else AMD ones: a machine with both would number them in two clashing ranges. */
export async function detectGpus (opts: DetectOptions = {}): Promise<GpuInfo[]> {
  const log = opts.log ?? debugLog
  const timeoutMs = opts.smiTimeoutMs ?? NVIDIA_SMI_TIMEOUT_MS
  const [nvidia, amd] = await Promise.all([
    runTool(opts.nvidiaSmi ?? 'nvidia-smi', NVIDIA_SMI_ARGS, timeoutMs, opts.env, log).then(out => out === undefined ? [] : parseNvidiaSmiCsv(out, log)),
    opts.rocmSmi === false
      ? []
      : runTool(opts.rocmSmi ?? 'rocm-smi', ROCM_SMI_ARGS, timeoutMs, opts.env, log).then(out => out === undefined ? [] : parseRocmSmiJson(out, log))
  ])
  if (nvidia.length > 0 && amd.length > 0) log(`ignoring ${amd.length} AMD GPU(s): NVIDIA GPUs were found and indexes would clash`)
  return nvidia.length > 0 ? nvidia : amd
}

/** Lines of `index, uuid, name, memory.total (MiB), memory.used, utilization.gpu`; bad lines are skipped. */
export function parseNvidiaSmiCsv (text: string, log: (msg: string) => void = debugLog): GpuInfo[] {
  const gpus: GpuInfo[] = []
  const seen = new Set<number>()
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line === '') continue
    const f = line.split(',').map(s => s.trim())
    // a name with a comma in it would add fields: the name is whatever lies between uuid and the last three
    if (f.length < 6) { log(`nvidia-smi: skipping malformed line ${JSON.stringify(line.slice(0, 200))}`); continue }
    const index = Number(f[0])
    const memMiB = Number(f[f.length - 3])
    const model = cleanName(f.slice(2, f.length - 3).join(','))
    if (!/^\d{1,4}$/.test(f[0]!) || index > MAX_GPU_INDEX || seen.has(index) || model === '' ||
        f[f.length - 3] === '' || !Number.isFinite(memMiB) || memMiB < 0) {
      log(`nvidia-smi: skipping malformed line ${JSON.stringify(line.slice(0, 200))}`)
      continue
    }
    seen.add(index)
    const gpu: GpuInfo = { index, vendor: 'nvidia', model, memoryBytes: Math.round(memMiB * MIB) }
    const uuid = f[1]!
    if (/^[\w.-]{1,128}$/.test(uuid) && !/^\[?N\/A\]?$/i.test(uuid)) gpu.uuid = uuid
    gpus.push(gpu)
    // more GPUs than any one machine has (and than an advertisement carries): the rest are ignored
    if (gpus.length >= MAX_GPUS) break
  }
  return gpus.sort((a, b) => a.index - b.index)
}

/** `{ "card0": { "Card series": …, "VRAM Total Memory (B)": "…" }, … }`; other keys are ignored. */
export function parseRocmSmiJson (text: string, log: (msg: string) => void = debugLog): GpuInfo[] {
  let doc: unknown
  try { doc = JSON.parse(text) } catch { log('rocm-smi: output is not JSON'); return [] }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return []
  const gpus: GpuInfo[] = []
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const m = /^card(\d{1,4})$/.exec(key)
    if (m === null || value === null || typeof value !== 'object') continue
    const card = value as Record<string, unknown>
    const index = Number(m[1])
    const memoryBytes = Number(card['VRAM Total Memory (B)'])
    const name = [card['Card Series'], card['Card series'], card['Card SKU'], card['Card model']]
      .find((v): v is string => typeof v === 'string' && v.trim() !== '')
    if (index > MAX_GPU_INDEX || !Number.isSafeInteger(memoryBytes) || memoryBytes < 0) {
      log(`rocm-smi: skipping ${key}`)
      continue
    }
    gpus.push({ index, vendor: 'amd', model: cleanName(name ?? 'AMD GPU') || 'AMD GPU', memoryBytes })
    if (gpus.length >= MAX_GPUS) break
  }
  return gpus.sort((a, b) => a.index - b.index)
}

export interface CpuSampler {
  /** Whole-machine CPU utilisation over the last interval, 0–100 (all processes counted). */
  utilisation: () => number
  stop: () => void
}

/**
 * Utilisation from os.cpus() tick counters: no child process, no priming delay (unlike
 * si.currentLoad()). The timer is unref'd so it never keeps the process alive.
 */
export function startCpuSampler (opts: { intervalMs?: number, cpuTimes?: () => os.CpuInfo[] } = {}): CpuSampler {
  const read = opts.cpuTimes ?? os.cpus
  let prev = totals(read())
  let last: number | undefined
  const timer = setInterval(() => {
    const cur = totals(read())
    const u = busy(prev, cur)
    if (u !== undefined) last = u
    prev = cur
  }, opts.intervalMs ?? CPU_SAMPLE_INTERVAL_MS)
  timer.unref()
  return {
    // before the first tick, report what has happened since start
    utilisation: () => last ?? busy(prev, totals(read())) ?? 0,
    stop: () => { clearInterval(timer) }
  }
}

interface Ticks { idle: number, total: number }

function totals (cpus: os.CpuInfo[]): Ticks {
  let idle = 0
  let total = 0
  for (const c of cpus) {
    idle += c.times.idle
    total += c.times.user + c.times.nice + c.times.sys + c.times.idle + c.times.irq
  }
  return { idle, total }
}

function busy (a: Ticks, b: Ticks): number | undefined {
  const total = b.total - a.total
  // no ticks elapsed, or a CPU went offline and the sums shrank: no meaningful sample
  if (total <= 0 || b.idle < a.idle) return undefined
  const u = 100 * (1 - (b.idle - a.idle) / total)
  return Math.round(Math.min(100, Math.max(0, u)) * 10) / 10
}

/**
 * Runs a GPU tool; undefined on any failure. The timer races the child too: a process stuck in
 * the driver (uninterruptible sleep) survives SIGKILL, and execFile would wait for it forever.
 */
function runTool (file: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv | undefined,
  log: (msg: string) => void): Promise<string | undefined> {
  return new Promise(resolve => {
    let done = false
    const finish = (out: string | undefined): void => {
      if (done) return
      done = true
      clearTimeout(guard)
      resolve(out)
    }
    const guard = setTimeout(() => {
      log(`${file}: no answer in ${timeoutMs} ms, assuming no GPUs`)
      finish(undefined)
    }, timeoutMs + 500)
    guard.unref()
    try {
      execFile(file, args, {
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: SMI_MAX_OUTPUT_BYTES,
        env: env ?? process.env,
        windowsHide: true,
        encoding: 'utf8'
      }, (err, stdout) => {
        if (err !== null) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean }
          const why = e.code === 'ENOENT'
            ? 'not found'
            : e.killed === true ? `killed after ${timeoutMs} ms` : e.message.split('\n')[0]
          log(`${file}: ${why}; assuming no GPUs`)
          finish(undefined)
        } else {
          finish(stdout)
        }
      }).on('error', () => { /* reported to the callback */ })
    } catch (err) {
      log(`${file}: ${(err as Error).message}`)
      finish(undefined)
    }
  })
}

async function siCall<T> (log: (msg: string) => void, what: string, fn: () => Promise<T> | undefined): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  try {
    const p = fn()
    if (p === undefined) return undefined
    return await Promise.race([p, new Promise<undefined>(resolve => {
      timer = setTimeout(() => { log(`systeminformation ${what}() took over ${SI_TIMEOUT_MS} ms`); resolve(undefined) }, SI_TIMEOUT_MS)
      timer.unref()
    })])
  } catch (err) {
    log(`systeminformation ${what}() failed: ${(err as Error).message}`)
    return undefined
  } finally {
    clearTimeout(timer)
  }
}

/** Printable, bounded: a GPU name is shown to users and gossiped to peers. */
function cleanName (s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]/g, '').trim().slice(0, 128)
}

const logger = createLogger('hardware')

// a missing GPU tool is the normal case on most machines: debug, not a warning
function debugLog (msg: string): void {
  logger.debug(msg)
}
