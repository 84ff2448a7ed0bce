/**
 * The owner's own load, for `--only-when-idle`: how busy the machine's CPUs are with work
 * that is not the grid's. From /proc: the machine's busy time (/proc/stat), minus the CPU
 * time of the commands this agent runs (every process of their process groups) and of the
 * agent itself. A percentage of all cores, over the time since the previous sample.
 *
 * Test hook: with VGRID_OWNER_LOAD_FILE set, the owner's load is read from that file instead
 * (a percentage, 0–100, such as `80`), so a test can play an owner coming and going.
 */
import fsp from 'node:fs/promises'

/** The test hook (see above); the real measurement is the default. */
export const OWNER_LOAD_FILE_ENV = 'VGRID_OWNER_LOAD_FILE'

/** Where the owner's load comes from: one sample per call, in % of all cores, or undefined when none could be taken. */
export interface OwnerLoadSource {
  sample (): Promise<number | undefined>
}

export interface CpuTicks {
  /** Ticks spent on anything but idle and waiting for I/O, all CPUs. */
  busy: number
  /** All ticks, all CPUs. */
  total: number
}

/** The `cpu` line of /proc/stat (user nice system idle iowait irq softirq steal …; guest is part of user). */
export function parseProcStat (text: string): CpuTicks | undefined {
  const line = text.split('\n').find((l) => l.startsWith('cpu '))
  if (line === undefined) return undefined
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number)
  if (f.length < 4 || f.some((n) => !Number.isFinite(n))) return undefined
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f
  const busy = user + nice + system + irq + softirq + steal
  return { busy, total: busy + idle + iowait }
}

/** Parent, process group and CPU time (utime + stime, ticks) from /proc/PID/stat. */
export function parsePidStat (text: string): { ppid: number, pgrp: number, ticks: number } | undefined {
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const close = text.lastIndexOf(')')
  if (close < 0) return undefined
  const f = text.slice(close + 2).split(' ')
  // f[0] is field 3 (state): ppid is field 4, pgrp 5, utime 14, stime 15
  const ppid = Number(f[1])
  const pgrp = Number(f[2])
  const ticks = Number(f[11]) + Number(f[12])
  return Number.isInteger(ppid) && Number.isInteger(pgrp) && Number.isFinite(ticks) ? { ppid, pgrp, ticks } : undefined
}

/**
 * The owner's share of the machine between two samples, in %: the machine's busy ticks minus
 * the grid's (`gridTicks`: the commands' and the agent's, over the same interval), over all ticks.
 */
export function ownerPercent (prev: CpuTicks, cur: CpuTicks, gridTicks: number): number | undefined {
  const total = cur.total - prev.total
  // no tick elapsed, or a CPU went offline and the sums shrank: no meaningful sample
  if (total <= 0 || cur.busy < prev.busy) return undefined
  const owner = Math.max(0, cur.busy - prev.busy - Math.max(0, gridTicks))
  return Math.min(100, 100 * owner / total)
}

/**
 * The real measurement. `groups` lists the process groups of the commands running now. The
 * grid's processes are the agent, every process it started however deep (a sandboxed
 * guest that left its group with `setsid` is still below its sandbox), and every process of
 * those groups (an unconfined guest's double fork is reparented away, but keeps its group).
 * A process seen for the first time counts with all its CPU time (it almost always started
 * since the last sample); one that ended since takes its last slice with it, which errs
 * towards the owner being busy, the safe side.
 */
export class ProcOwnerLoad implements OwnerLoadSource {
  private prev: CpuTicks | undefined
  private prevTicks = new Map<number, number>()

  constructor (private readonly groups: () => Iterable<number>, private readonly proc = '/proc', private readonly self = process.pid) {}

  async sample (): Promise<number | undefined> {
    const cur = parseProcStat(await fsp.readFile(`${this.proc}/stat`, 'utf8').catch(() => ''))
    if (cur === undefined) return undefined
    const pgids = new Set(this.groups())
    const ticks = await this.processTicks(pgids)
    let grid = 0
    for (const [pid, t] of ticks) grid += t - (this.prevTicks.get(pid) ?? 0)
    const prev = this.prev
    this.prev = cur
    this.prevTicks = ticks
    return prev === undefined ? undefined : ownerPercent(prev, cur, grid)
  }

  /** CPU ticks of this agent, of what it started and of every process in `pgids`, by pid. */
  private async processTicks (pgids: Set<number>): Promise<Map<number, number>> {
    const all = new Map<number, { ppid: number, pgrp: number, ticks: number }>()
    const names = await fsp.readdir(this.proc).catch(() => [] as string[])
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue
      const st = parsePidStat(await fsp.readFile(`${this.proc}/${name}/stat`, 'utf8').catch(() => ''))
      if (st !== undefined) all.set(Number(name), st)
    }
    const grid = new Map<number, boolean>([[this.self, true]])
    const isGrid = (pid: number): boolean => {
      const chain: number[] = []
      let verdict = false
      for (let p: number | undefined = pid; ; p = all.get(p)?.ppid) {
        if (p === undefined || p <= 1) break
        const known = grid.get(p)
        if (known !== undefined) { verdict = known; break }
        chain.push(p)
        if (pgids.has(all.get(p)?.pgrp ?? -1)) { verdict = true; break }
      }
      for (const p of chain) grid.set(p, verdict)
      return verdict
    }
    const out = new Map<number, number>()
    for (const [pid, st] of all) if (isGrid(pid)) out.set(pid, st.ticks)
    return out
  }
}

/** The test hook: the file's number is the owner's load; a missing or bad file gives no sample. */
export class FileOwnerLoad implements OwnerLoadSource {
  constructor (private readonly path: string) {}

  async sample (): Promise<number | undefined> {
    const text = await fsp.readFile(this.path, 'utf8').catch(() => undefined)
    const n = text === undefined || text.trim() === '' ? NaN : Number(text.trim().replace(/%$/, ''))
    return Number.isFinite(n) && n >= 0 && n <= 100 ? n : undefined
  }
}

/** The source an agent uses: the test hook when its variable is set, else /proc. */
export function ownerLoadSource (groups: () => Iterable<number>, env: NodeJS.ProcessEnv = process.env): OwnerLoadSource {
  const file = env[OWNER_LOAD_FILE_ENV]
  return file !== undefined && file !== '' ? new FileOwnerLoad(file) : new ProcOwnerLoad(groups)
}
