/**
 * What a command asks of a member, and the limits every part of vgrid holds a machine to. One
 * request type for `vrun`/`vbatch`'s options, the exec protocol's spec, placement and the
 * executor's ledger; one set of limits for requests, offers, advertisements and config; one
 * match of pools, labels and GPUs. A request that one part accepts is never refused by another
 * for a limit they disagree on (they did: cores 4,096 on the wire, 65,536 in the config).
 *
 * Imported by the CLI: nothing heavy here.
 */
import { MAX_SIZE_BYTES } from './units.js'
import { type Obj, int, optStr, strMap, bad } from './validate.js'

/** Cores a request, an offer or an advertisement may name at most. */
export const MAX_CPUS = 4096
/** GPUs a request may ask for, and a machine may have, at most. */
export const MAX_GPUS = 64
/** Highest GPU index (nvidia-smi's, `--gpus 0,3`). */
export const MAX_GPU_INDEX = 1023
/** `--mem` / `--gpu-mem` at most this (4 PiB), as units.ts parses sizes. */
export const MAX_REQUEST_BYTES = MAX_SIZE_BYTES
/** Pools a member lends to at most. */
export const MAX_POOLS = 32
/** Labels a member has, and a request names, at most. */
export const MAX_LABELS = 64
export const MAX_LABEL_VALUE_CHARS = 256
export const MAX_POOL_NAME_CHARS = 63
/** A label key (`--label k=v`), on a member and in a request. */
export const LABEL_KEY_RE = /^[A-Za-z0-9._/-]{1,63}$/
/** A pool name (`--pool`), on a member and in a request. */
export const POOL_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/

/**
 * `-P NAME` is a resource shape, as Velda's docs write them, when NAME is exactly one of
 * (case-insensitive):
 *   `cpu-N`        N cores
 *   `gpu-N`        N GPUs of any model
 *   `gpu-MODEL`    one GPU whose model matches MODEL as `--gpu-model` does (gpuMatches)
 *   `gpu-MODEL-N`  N such GPUs
 * MODEL starts with a letter and is runs of a-z 0-9 . _ joined by single hyphens
 * (`a100`, `rtx4090`, `a100-sxm4`); a final `-DIGITS` is always the count, so `gpu-rtx-4090`
 * asks for 4,090 GPUs (write `gpu-rtx4090`, or `gpu-rtx-4090-1`). Any other NAME names a pool,
 * and an agent refuses a pool named exactly a shape, so the two never meet: `cpu-boxes`,
 * `gpus`, `gpu` and `cpu` are pools; `gpu-boxes` is a shape (a GPU whose model has "boxes").
 */
const CPU_SHAPE_RE = /^cpu-(\d+)$/i
const GPU_SHAPE_RE = /^gpu-(?:(\d+)|([a-z][a-z0-9._]*(?:-[a-z0-9._]+)*?)(?:-(\d+))?)$/i

/** A shape's parts, as written: `count` is the digits (undefined for `gpu-MODEL`: one), unchecked against limits. */
export type ShapeName =
  | { kind: 'cpu', count: string }
  | { kind: 'gpu', count?: string, model?: string }

/** The shape NAME is exactly, or undefined when it is not one (it then names a pool). */
export function shapeName (name: string): ShapeName | undefined {
  const cpu = CPU_SHAPE_RE.exec(name)
  if (cpu !== null) return { kind: 'cpu', count: cpu[1]! }
  const gpu = GPU_SHAPE_RE.exec(name)
  if (gpu === null) return undefined
  if (gpu[1] !== undefined) return { kind: 'gpu', count: gpu[1] }
  return gpu[3] !== undefined ? { kind: 'gpu', model: gpu[2]!, count: gpu[3] } : { kind: 'gpu', model: gpu[2]! }
}

/** Whether NAME is exactly a shape: what `-P` reads as one, and no pool may be named. */
export function isShapeName (name: string): boolean {
  return shapeName(name) !== undefined
}

/** `16 cores`, `2 GPUs`, `1 GPU whose model contains "a100"`: what the shape asks for, for messages. */
export function describeShape (s: ShapeName): string {
  const n = s.count ?? '1'
  if (s.kind === 'cpu') return `${n} ${n === '1' ? 'core' : 'cores'}`
  return `${n} ${n === '1' ? 'GPU' : 'GPUs'}${s.model !== undefined ? ` whose model contains "${s.model}"` : ''}`
}

/** What a command needs of the member that runs it. */
export interface ResourceRequest {
  /** Cores (counted, not pinned); 0 is allowed and counts against nothing. */
  cpus: number
  /** Whole GPUs, each given to this command alone. */
  gpus: number
  /** Case-insensitive substring of the GPU model (`a100`). */
  gpuModel?: string
  /** Memory to reserve, in bytes (counted, not enforced); absent = none. */
  memBytes?: number
  /** Each GPU given has at least this much memory. */
  gpuMemBytes?: number
  /** Only members that have every one of these labels. */
  labels?: Record<string, string>
  /** Only members that lend to this pool (`vgrid agent --pool`). */
  pool?: string
}

/** What a member lends to, as a request's pool and labels are matched against it. */
export interface PolicyOffer {
  pools?: readonly string[]
  labels?: Readonly<Record<string, string>>
}

/** A GPU as matching sees it. */
export interface GpuShape { model: string, memoryBytes: number }

/** The resource fields of a message (a run spec), validated; absent counts default to 1 core, no GPU. */
export function parseResourceRequest (m: Obj): ResourceRequest {
  const req: ResourceRequest = {
    cpus: int(m.cpus ?? 1, 'cpus', 0, MAX_CPUS),
    gpus: int(m.gpus ?? 0, 'gpus', 0, MAX_GPUS)
  }
  const gpuModel = optStr(m.gpuModel, 'gpuModel', 256)
  if (gpuModel !== undefined) req.gpuModel = gpuModel
  if (m.memBytes !== undefined && m.memBytes !== null) req.memBytes = int(m.memBytes, 'memBytes', 0, MAX_REQUEST_BYTES)
  if (m.gpuMemBytes !== undefined && m.gpuMemBytes !== null) req.gpuMemBytes = int(m.gpuMemBytes, 'gpuMemBytes', 0, MAX_REQUEST_BYTES)
  if (m.labels !== undefined && m.labels !== null) {
    const labels = strMap(m.labels, 'labels', MAX_LABELS, MAX_LABEL_VALUE_CHARS)
    for (const k of Object.keys(labels)) if (!LABEL_KEY_RE.test(k)) bad(`labels has a key that is not a label key (${JSON.stringify(k.slice(0, 64))})`)
    if (Object.keys(labels).length > 0) req.labels = labels
  }
  const pool = optStr(m.pool, 'pool', MAX_POOL_NAME_CHARS)
  if (pool !== undefined) {
    if (!POOL_NAME_RE.test(pool)) bad('pool is not a pool name')
    req.pool = pool
  }
  return req
}

/** Why a member lending to `offer` is not one the request may run on (its pool, its labels), or undefined. */
export function policyMismatch (offer: PolicyOffer, req: ResourceRequest): string | undefined {
  const pools = offer.pools ?? []
  if (req.pool !== undefined && !pools.includes(req.pool)) {
    return `it is not in pool "${req.pool}" (${pools.length === 0 ? 'it is in no pool' : `its pools: ${pools.join(', ')}`})`
  }
  const have = offer.labels ?? {}
  const missing = Object.entries(req.labels ?? {}).filter(([k, v]) => !Object.hasOwn(have, k) || have[k] !== v)
  if (missing.length > 0) return `it is not labelled ${missing.map(([k, v]) => `${k}=${v}`).join(', ')}`
  return undefined
}

/** Whether the request may run on a member lending to `offer`: what no free room changes. */
export function matches (offer: PolicyOffer, req: ResourceRequest): boolean {
  return policyMismatch(offer, req) === undefined
}

/** Whether the GPU is one the request takes: its model matches, and it has the memory asked for. */
export function gpuMatches (g: GpuShape, req: ResourceRequest): boolean {
  return (req.gpuModel === undefined || g.model.toLowerCase().includes(req.gpuModel.toLowerCase())) && g.memoryBytes >= (req.gpuMemBytes ?? 0)
}
