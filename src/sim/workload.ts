/**
 * The simulated fleet and what it is asked to do. The fleet is fixed by the seed and the number
 * of agents. The job stream is fixed by the seed and the number of jobs: at every load the same
 * jobs (shapes, durations, submitters) arrive, only closer together, so that the arrival window
 * holds `load` of the grid's average capacity in core-seconds. Churn (desktops leaving and coming
 * back) is drawn over that window. Every placer of one scenario gets the same Workload.
 */
import type { GpuInfo } from '../grid/types.js'
import type { ResourceRequest } from '../common/resources.js'
import { CHURN_FRACTION, CHURN_MEAN_DOWN_MS, CHURN_MEAN_UP_MS } from './constants.js'
import { exponential, logNormal, pick, stream, type Rng } from './random.js'

export interface AgentSpec {
  id: number
  host: string
  cpus: number
  gpus: GpuInfo[]
  /** Joins and leaves during the run (and never submits: see index.ts). */
  volatile: boolean
}

export interface JobSpec {
  id: number
  submitAt: number
  submitter: number
  req: ResourceRequest
  durationMs: number
}

export interface ChurnEvent {
  t: number
  agent: number
  kind: 'join' | 'leave'
}

export interface Workload {
  agents: AgentSpec[]
  /** In submission order. */
  jobs: JobSpec[]
  /** In time order; agents not up at 0 join by one of these. */
  churn: ChurnEvent[]
  initiallyUp: boolean[]
  load: number
  /** The last submission (ms). */
  windowMs: number
  /** Average cores and GPUs up over the window (volatile agents counted by their share of time up). */
  capacity: { cpus: number, gpus: number }
  /** Offered load of the GPUs (the CPU load is `load`). */
  gpuLoad: number
}

export interface WorkloadInit {
  agents: number
  jobs: number
  load: number
  seed: number
  /** Share of agents that join and leave; default CHURN_FRACTION. */
  churnFraction?: number
}

const GIB = 1024 ** 3
const A100 = 'NVIDIA A100-SXM4-80GB'
const H100 = 'NVIDIA H100 80GB HBM3'
const RTX = 'NVIDIA GeForce RTX 4090'

interface Kind { weight: number, make: (rng: Rng) => { cpus: number, gpus: number, model: string } }

/** Mixed sizes: desktops, workstations (some with a GPU), servers, GPU servers. */
const FLEET: Kind[] = [
  { weight: 45, make: (rng) => ({ cpus: rng() < 0.5 ? 4 : 8, gpus: 0, model: '' }) },
  { weight: 30, make: (rng) => ({ cpus: 16, gpus: rng() < 0.4 ? 1 : 0, model: RTX }) },
  { weight: 17, make: (rng) => ({ cpus: rng() < 0.6 ? 32 : 64, gpus: 0, model: '' }) },
  { weight: 8, make: (rng) => ({ cpus: 32, gpus: rng() < 0.5 ? 4 : 8, model: rng() < 0.5 ? A100 : H100 }) }
]

interface Shape { weight: number, req: ResourceRequest }

const CPU_SHAPES: Shape[] = [
  { weight: 30, req: { cpus: 1, gpus: 0 } },
  { weight: 20, req: { cpus: 2, gpus: 0 } },
  { weight: 25, req: { cpus: 4, gpus: 0 } },
  { weight: 15, req: { cpus: 8, gpus: 0 } },
  { weight: 7, req: { cpus: 16, gpus: 0 } },
  { weight: 3, req: { cpus: 32, gpus: 0 } }
]

const GPU_SHAPES: Shape[] = [
  { weight: 60, req: { cpus: 4, gpus: 1 } },
  { weight: 20, req: { cpus: 8, gpus: 2 } },
  { weight: 10, req: { cpus: 8, gpus: 2, gpuModel: 'a100' } },
  { weight: 10, req: { cpus: 16, gpus: 4 } }
]

/** Seven short jobs (8 s on average) for three long ones (50 s); 21 s on average. */
function duration (rng: Rng): number {
  const ms = rng() < 0.7 ? logNormal(rng, 8_000, 0.8) : logNormal(rng, 50_000, 0.6)
  return Math.min(30 * 60_000, Math.max(100, ms))
}

function expected (shapes: Shape[], f: (r: ResourceRequest) => number): number {
  let w = 0
  let s = 0
  for (const sh of shapes) { w += sh.weight; s += sh.weight * f(sh.req) }
  return s / w
}

export function makeFleet (n: number, seed: number, churnFraction = CHURN_FRACTION): AgentSpec[] {
  const rng = stream(seed, 1)
  const agents: AgentSpec[] = []
  for (let id = 0; id < n; id++) {
    const k = pick(rng, FLEET).make(rng)
    const gpus = Array.from({ length: k.gpus }, (_, index) => ({ index, vendor: 'NVIDIA', model: k.model, memoryBytes: 80 * GIB }))
    agents.push({ id, host: `sim-${id}`, cpus: k.cpus, gpus, volatile: false })
  }
  // Volatile agents are drawn among the small machines without GPUs (desktops).
  const small = agents.filter((a) => a.gpus.length === 0 && a.cpus <= 8)
  const want = Math.min(small.length, Math.round(n * churnFraction))
  for (let i = 0; i < want; i++) {
    const j = i + Math.floor(rng() * (small.length - i))
    ;[small[i], small[j]] = [small[j], small[i]]
    small[i].volatile = true
  }
  return agents
}

export function makeWorkload (init: WorkloadInit): Workload {
  const agents = makeFleet(init.agents, init.seed, init.churnFraction)
  const upShare = CHURN_MEAN_UP_MS / (CHURN_MEAN_UP_MS + CHURN_MEAN_DOWN_MS)
  let cpus = 0
  let gpus = 0
  for (const a of agents) {
    cpus += a.volatile ? a.cpus * upShare : a.cpus
    gpus += a.gpus.length
  }
  // The share of GPU jobs that loads the GPUs as much as all jobs load the cores.
  const cc = expected(CPU_SHAPES, (r) => r.cpus)
  const cg = expected(GPU_SHAPES, (r) => r.cpus)
  const gg = expected(GPU_SHAPES, (r) => r.gpus)
  const gpuShare = gpus === 0 ? 0 : (gpus * cc) / (gg * cpus - gpus * cg + gpus * cc)

  // The job stream does not depend on the load: only its time scale does.
  const rng = stream(init.seed, 2)
  const submitters = agents.filter((a) => !a.volatile).map((a) => a.id)
  const jobs: JobSpec[] = []
  let at = 0
  let coreMs = 0
  let gpuMs = 0
  for (let id = 0; id < init.jobs; id++) {
    const req = { ...pick(rng, rng() < gpuShare ? GPU_SHAPES : CPU_SHAPES).req }
    const durationMs = duration(rng)
    at += exponential(rng, 1)
    coreMs += req.cpus * durationMs
    gpuMs += req.gpus * durationMs
    jobs.push({ id, submitAt: at, submitter: submitters[Math.floor(rng() * submitters.length)], req, durationMs })
  }
  const windowMs = coreMs / (init.load * cpus)
  const scale = windowMs / Math.max(at, 1e-9)
  for (const j of jobs) j.submitAt *= scale

  const { churn, initiallyUp } = makeChurn(agents, windowMs, init.seed, upShare)
  return {
    agents, jobs, churn, initiallyUp, load: init.load, windowMs,
    capacity: { cpus, gpus },
    gpuLoad: gpus === 0 ? 0 : gpuMs / (windowMs * gpus)
  }
}

function makeChurn (agents: AgentSpec[], windowMs: number, seed: number, upShare: number): { churn: ChurnEvent[], initiallyUp: boolean[] } {
  const rng = stream(seed, 3)
  const churn: ChurnEvent[] = []
  const initiallyUp = agents.map((a) => {
    if (!a.volatile) return true
    let up = rng() < upShare
    const first = up
    for (let t = exponential(rng, up ? CHURN_MEAN_UP_MS : CHURN_MEAN_DOWN_MS); t < windowMs;
      t += exponential(rng, up ? CHURN_MEAN_UP_MS : CHURN_MEAN_DOWN_MS)) {
      up = !up
      churn.push({ t, agent: a.id, kind: up ? 'join' : 'leave' })
    }
    return first
  })
  churn.sort((a, b) => a.t - b.t || a.agent - b.agent)
  return { churn, initiallyUp }
}
