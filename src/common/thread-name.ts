/**
 * Names the calling thread (Linux: /proc/thread-self/comm, 15 bytes at most), so that
 * `top -H`, `ps -T` and `perf` tell the agent's threads apart: `vgrid-pull` receiving a
 * sync's chunks, `vgrid-scan` hashing a workspace… instead of a row of `node`. The bench
 * splits a sync's CPU by these names. Elsewhere, or when the file cannot be written, the
 * thread keeps its name. The main thread is never renamed: its name is the process's own.
 */
import { writeFileSync } from 'node:fs'
import { isMainThread } from 'node:worker_threads'

export const THREAD_NAMES = {
  serve: 'vgrid-serve',
  pull: 'vgrid-pull',
  scan: 'vgrid-scan',
  stat: 'vgrid-stat',
  write: 'vgrid-write'
} as const

export function nameThread (name: string): void {
  if (process.platform !== 'linux' || isMainThread) return
  try {
    writeFileSync('/proc/thread-self/comm', name.slice(0, 15))
  } catch {}
}
