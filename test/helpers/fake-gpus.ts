/**
 * Makes a machine look as if it had GPUs: an environment whose PATH finds
 * test/helpers/fake-nvidia-smi under the name `nvidia-smi` first, answering for the GPUs in
 * VGRID_FAKE_GPUS ("MODEL:MEMORY_MIB,…", e.g. "A100-SXM4-80GB:81920,RTX 4090:24564").
 * Merge it into the env of an agent (or process.env) to simulate a GPU machine.
 * VGRID_FAKE_SMI_MODE=garbage|fail|hang makes the fake misbehave.
 */
import { createHash } from 'node:crypto'
import { mkdirSync, readlinkSync, renameSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const FAKE_NVIDIA_SMI = fileURLToPath(new URL('./fake-nvidia-smi', import.meta.url))

let binDir: string | undefined

/**
 * A directory holding only `nvidia-smi` → the fake. Its name is fixed per user and checkout,
 * so test workers share it and no run leaves a new one behind (exit hooks do not run in
 * vitest's workers).
 */
export function fakeGpuBinDir (): string {
  if (binDir !== undefined) return binDir
  const tag = createHash('sha256').update(FAKE_NVIDIA_SMI).digest('hex').slice(0, 12)
  const dir = join(tmpdir(), `vgrid-fake-gpu-${process.getuid?.() ?? 'u'}-${tag}`)
  const link = join(dir, 'nvidia-smi')
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  let current: string | undefined
  try { current = readlinkSync(link) } catch {}
  if (current !== FAKE_NVIDIA_SMI) {
    // build aside and rename: a worker beside us may be doing the same at this moment
    const tmp = `${link}.${process.pid}`
    symlinkSync(FAKE_NVIDIA_SMI, tmp)
    renameSync(tmp, link)
  }
  binDir = dir
  return dir
}

/** `{ PATH, VGRID_FAKE_GPUS }` to merge into an environment; `''` means a machine with no GPUs. */
export function fakeGpuPath (gpus: string, basePath = process.env.PATH ?? ''): { PATH: string, VGRID_FAKE_GPUS: string } {
  return { PATH: basePath === '' ? fakeGpuBinDir() : `${fakeGpuBinDir()}${delimiter}${basePath}`, VGRID_FAKE_GPUS: gpus }
}
