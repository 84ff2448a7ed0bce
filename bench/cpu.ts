/**
 * Where a measured piece of work spent the machine's CPU, from /proc (Linux): the whole
 * machine's CPU time, and a process's split by thread name (the agent names its worker
 * threads, common/thread-name.ts). On a machine whose cores are all busy, a time is its CPU
 * over the cores, so these say what bounds a figure, and they move less from run to run
 * than the times do.
 */
import fs from 'node:fs'

/** USER_HZ, the unit of /proc's times: 100 on every Linux this runs on. */
const TICK_MS = 10

/** CPU time the whole machine spent (user, nice, system, irq, softirq; not idle, iowait or steal), in ms. */
export function machineCpuMs (): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]!) * TICK_MS
}

/** user + system of a /proc stat line, in ms (the name may hold spaces and parentheses). */
function statCpuMs (line: string): number {
  const f = line.slice(line.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * TICK_MS
}

export interface CpuSnapshot {
  pid: number
  /** The process's CPU, threads that ended included. */
  total: number
  /** tid → its name and CPU. */
  threads: Map<string, { name: string, ms: number }>
}

export function cpuSnapshot (pid: number): CpuSnapshot {
  const threads = new Map<string, { name: string, ms: number }>()
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
      threads.set(tid, { name, ms: statCpuMs(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')) })
    } catch {} // it ended meanwhile
  }
  return { pid, total: statCpuMs(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')), threads }
}

const MAIN_THREAD = 'main thread'
const NODE_THREADS = "Node's own threads (V8 compiler and GC, libuv pool)"
const ENDED_THREADS = 'threads that ended'

/**
 * The process's CPU between two snapshots, in ms, by thread: its main thread, each named
 * thread (threads of one name together), Node's unnamed ones, and those that ended between
 * the two (what the total gained beyond the threads still there).
 */
export function cpuSplit (before: CpuSnapshot, after: CpuSnapshot): Record<string, number> {
  const out: Record<string, number> = {}
  let seen = 0
  for (const [tid, t] of after.threads) {
    const ms = t.ms - (before.threads.get(tid)?.ms ?? 0)
    const key = tid === String(after.pid) ? MAIN_THREAD : t.name === 'node' ? NODE_THREADS : t.name
    out[key] = (out[key] ?? 0) + ms
    seen += ms
  }
  const ended = after.total - before.total - seen
  if (ended > 0) out[ENDED_THREADS] = ended
  return out
}
