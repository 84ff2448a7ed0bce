/**
 * The environment of a command: the agent's, then what the user passed, then the GPU
 * visibility variables last, so a task can neither see GPUs it was not given nor override
 * that with `-e CUDA_VISIBLE_DEVICES=…`.
 */
import type { LentGpu } from './types.js'

const NVIDIA_VARS = ['CUDA_VISIBLE_DEVICES', 'NVIDIA_VISIBLE_DEVICES'] as const
const AMD_VARS = ['ROCR_VISIBLE_DEVICES', 'HIP_VISIBLE_DEVICES'] as const

type Vendor = 'nvidia' | 'amd' | 'other'

export function gpuVendor (vendor: string): Vendor {
  const v = vendor.toLowerCase()
  if (v.includes('nvidia')) return 'nvidia'
  if (/\bamd\b|advanced micro|\bati\b/.test(v)) return 'amd'
  return 'other'
}

/** The GPU variables for `gpus` (indexes as the vendor's tools number them), or none on a machine without GPUs. */
export function gpuEnv (gpus: LentGpu[], machineHasGpus: boolean): Record<string, string> {
  if (gpus.length === 0 && !machineHasGpus) return {}
  const list = (vendor: Vendor): string => gpus.filter((g) => gpuVendor(g.vendor) === vendor).map((g) => g.index).join(',')
  const env: Record<string, string> = {}
  // Every vendor's variables are set, empty when none of its GPUs were assigned: on a machine
  // with GPUs of both kinds a task given an NVIDIA one must not grab the AMD ones.
  for (const name of NVIDIA_VARS) env[name] = list('nvidia')
  for (const name of AMD_VARS) env[name] = list('amd')
  // Our indexes are nvidia-smi's, which orders by PCI bus; CUDA by default puts the fastest
  // GPU first, so without this CUDA_VISIBLE_DEVICES=1 could name another card.
  env.CUDA_DEVICE_ORDER = 'PCI_BUS_ID'
  return env
}

export function commandEnv (base: Record<string, string>, user: Record<string, string>, gpus: LentGpu[], machineHasGpus: boolean): Record<string, string> {
  return { ...base, ...user, ...gpuEnv(gpus, machineHasGpus) }
}
