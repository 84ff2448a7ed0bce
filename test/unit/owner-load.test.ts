import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  FileOwnerLoad, ProcOwnerLoad, ownerLoadSource, ownerPercent, parsePidStat, parseProcStat
} from '../../src/agent/owner-load.js'
import { waitFor } from '../helpers/wait.js'

const dirs: string[] = []
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })
function temp (): string {
  const d = mkdtempSync(join(tmpdir(), 'vgrid-load-'))
  dirs.push(d)
  return d
}

/** A /proc/PID/stat line: pid (comm) state ppid pgrp … utime stime … */
function pidStat (pid: number, comm: string, pgrp: number, utime: number, stime: number): string {
  return `${pid} (${comm}) S 1 ${pgrp} ${pgrp} 0 -1 4194560 100 0 0 0 ${utime} ${stime} 7 8 20 10 1 0 12345 0 0\n`
}

describe('parsing /proc', () => {
  it('takes busy and total ticks from the cpu line of /proc/stat', () => {
    const text = 'cpu  100 5 50 1000 20 3 2 10 7 0\ncpu0 50 2 25 500 10 1 1 5 3 0\nintr 1 2\n'
    // busy: user nice system irq softirq steal; idle and iowait are not
    expect(parseProcStat(text)).toEqual({ busy: 170, total: 1190 })
    expect(parseProcStat('intr 1\n')).toBeUndefined()
    expect(parseProcStat('cpu  a b c d\n')).toBeUndefined()
  })

  it('takes the process group and utime + stime of /proc/PID/stat, whatever the command is called', () => {
    expect(parsePidStat(pidStat(42, 'sleep', 40, 11, 4))).toMatchObject({ pgrp: 40, ticks: 15 })
    expect(parsePidStat(pidStat(42, 'a) b (c', 41, 1, 2))).toMatchObject({ pgrp: 41, ticks: 3 })
    expect(parsePidStat('garbage')).toBeUndefined()
  })

  it('reads the real /proc of this process', () => {
    const me = parsePidStat(readFileSync('/proc/self/stat', 'utf8'))
    expect(me?.ticks).toBeGreaterThanOrEqual(0)
    expect(me?.pgrp).toBeGreaterThan(0)
    const cpu = parseProcStat(readFileSync('/proc/stat', 'utf8'))
    expect(cpu!.total).toBeGreaterThan(cpu!.busy)
  })
})

describe('the owner\'s share', () => {
  it.each([
    // prev busy/total, cur busy/total, grid ticks → %
    [[100, 1000], [200, 1200], 0, 50],
    [[100, 1000], [200, 1200], 60, 20],
    [[100, 1000], [200, 1200], 150, 0],
    [[100, 1000], [100, 1000], 0, undefined],
    [[100, 1000], [50, 1200], 0, undefined]
  ])('%j → %j, %d grid ticks: %s', (prev, cur, grid, want) => {
    expect(ownerPercent({ busy: prev[0]!, total: prev[1]! }, { busy: cur[0]!, total: cur[1]! }, grid)).toBe(want)
  })
})

describe('ProcOwnerLoad', () => {
  it('leaves out the CPU time of the grid\'s process groups and of the agent (a fake /proc)', async () => {
    const proc = temp()
    const write = (busy: number, total: number, procs: Array<[number, number, number]>): void => {
      writeFileSync(join(proc, 'stat'), `cpu  ${busy} 0 0 ${total - busy} 0 0 0 0 0 0\n`)
      for (const [pid, pgrp, ticks] of procs) {
        mkdirSync(join(proc, String(pid)), { recursive: true })
        writeFileSync(join(proc, String(pid), 'stat'), pidStat(pid, 'x', pgrp, ticks, 0))
      }
    }
    // 7 is the agent, 100 leads a guest's group (101 is in it), 200 is the owner's own
    write(1000, 10_000, [[7, 7, 50], [100, 100, 10], [101, 100, 0], [200, 200, 500]])
    const load = new ProcOwnerLoad(() => [100], proc, 7)
    expect(await load.sample()).toBeUndefined() // the first sample only sets the start
    // 400 busy ticks of 1000: 100 the agent's, 150 the guest's group's: 150 left for the owner
    write(1400, 11_000, [[7, 7, 150], [100, 100, 110], [101, 100, 50], [200, 200, 650]])
    expect(await load.sample()).toBeCloseTo(15)
    // the guest ended: only the owner's work is left
    rmSync(join(proc, '100'), { recursive: true })
    rmSync(join(proc, '101'), { recursive: true })
    write(1900, 12_000, [[7, 7, 150], [200, 200, 1150]])
    expect(await load.sample()).toBeCloseTo(50)
  })

  it('counts what the agent started as the grid\'s, also a process that left its group (a fake /proc)', async () => {
    const proc = temp()
    const write = (busy: number, total: number, procs: Array<[number, number, number, number]>): void => {
      writeFileSync(join(proc, 'stat'), `cpu  ${busy} 0 0 ${total - busy} 0 0 0 0 0 0\n`)
      for (const [pid, ppid, pgrp, ticks] of procs) {
        mkdirSync(join(proc, String(pid)), { recursive: true })
        writeFileSync(join(proc, String(pid), 'stat'), `${pid} (x) S ${ppid} ${pgrp} ${pgrp} 0 -1 4194560 100 0 0 0 ${ticks} 0 7 8 20 10 1 0 12345 0 0\n`)
      }
    }
    // 7 is the agent; 100 a sandbox's monitor (group 100), 101 its namespace's first
    // process, 102 a guest process that called setsid (group 102, below 101); 200 the owner's
    write(1000, 10_000, [[7, 1, 7, 0], [100, 7, 100, 0], [101, 100, 100, 0], [102, 101, 102, 0], [200, 1, 200, 0]])
    const load = new ProcOwnerLoad(() => [100], proc, 7)
    expect(await load.sample()).toBeUndefined()
    // 500 busy ticks: 300 the setsid guest's, 200 the owner's
    write(1500, 11_000, [[7, 1, 7, 0], [100, 7, 100, 0], [101, 100, 100, 0], [102, 101, 102, 300], [200, 1, 200, 200]])
    expect(await load.sample()).toBeCloseTo(20)
  })

  it('on the real /proc, a busy guest\'s CPU time is not the owner\'s', async () => {
    // One busy loop in its own process group, as the agent starts a command, but not below
    // this process (a shell starts it and exits): what this process started counts as the
    // agent's, and `without` must see the loop as the owner's. Both samplers read the same
    // copies of the real /proc, taken twice: what else runs on this machine cannot come
    // between their readings.
    const sh = spawn('sh', ['-c', `'${process.execPath}' -e 'for (;;) {}' </dev/null >/dev/null 2>&1 & echo $!`], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] })
    const exited = new Promise((resolve) => sh.once('exit', resolve))
    const group = await new Promise<number>((resolve, reject) => { sh.once('spawn', () => { resolve(sh.pid!) }); sh.once('error', reject) })
    try {
      const pid = await new Promise<number>((resolve) => { sh.stdout!.once('data', (d: Buffer) => { resolve(Number(d.toString().trim())) }) })
      await exited
      const proc = temp()
      const withGuest = new ProcOwnerLoad(() => [group], proc)
      const without = new ProcOwnerLoad(() => [], proc)
      const ticks = (): number => parsePidStat(readFileSync(join(proc, String(pid), 'stat'), 'utf8'))!.ticks
      const total = (): number => parseProcStat(readFileSync(join(proc, 'stat'), 'utf8'))!.total
      copyProc(proc)
      await Promise.all([withGuest.sample(), without.sample()])
      const [t0, c0] = [total(), ticks()]
      // long enough for the loop to burn a measurable share whatever else runs here
      await waitFor(() => parsePidStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))!.ticks - c0 >= 30, 'the guest to use 30 ticks of CPU', 20_000)
      copyProc(proc)
      const [a, b] = await Promise.all([withGuest.sample(), without.sample()])
      const share = 100 * (ticks() - c0) / (total() - t0)
      expect(share).toBeGreaterThan(0)
      // what the guest burnt is counted by `without` and not by `withGuest`, and nothing else
      expect(b! - a!).toBeCloseTo(share, 6)
    } finally {
      process.kill(-group, 'SIGKILL')
    }
  })
})

/** Copies what ProcOwnerLoad reads of /proc (its stat, each process's stat) into `dir`. */
function copyProc (dir: string): void {
  for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true })
  writeFileSync(join(dir, 'stat'), readFileSync('/proc/stat'))
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let stat: Buffer
    try { stat = readFileSync(`/proc/${name}/stat`) } catch { continue }
    mkdirSync(join(dir, name), { recursive: true })
    writeFileSync(join(dir, name, 'stat'), stat)
  }
}

describe('the test hook', () => {
  it('reads the owner\'s load from VGRID_OWNER_LOAD_FILE when it is set', async () => {
    const file = join(temp(), 'load')
    const src = ownerLoadSource(() => [], { VGRID_OWNER_LOAD_FILE: file })
    expect(src).toBeInstanceOf(FileOwnerLoad)
    expect(ownerLoadSource(() => [], {})).toBeInstanceOf(ProcOwnerLoad)
    expect(await src.sample()).toBeUndefined()
    for (const [text, want] of [['80\n', 80], ['12.5%', 12.5], ['0', 0], ['101', undefined], ['busy', undefined], ['', undefined]] as const) {
      writeFileSync(file, text)
      expect(await src.sample()).toBe(want)
    }
  })
})
