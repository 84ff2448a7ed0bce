/** Small statistics and timing helpers for the benchmarks. */
import { spawn } from 'node:child_process'

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

export function percentile (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}

/** Wall time in ms of one run of a command to its exit; rejects on a non-zero exit. */
export async function timeCommand (cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, cwd?: string): Promise<number> {
  const t0 = process.hrtime.bigint()
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.on('error', reject)
    child.on('close', (code) => { code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`)) })
  })
  return Number(process.hrtime.bigint() - t0) / 1e6
}

export async function timeRepeated (n: number, fn: () => Promise<number>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push(await fn())
  return out
}

/** Resident set size of a process in bytes, from /proc. */
export function rssBytes (pid: number, readFile: (p: string) => string): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFile(`/proc/${pid}/status`))
  return m === null ? NaN : Number(m[1]) * 1024
}
