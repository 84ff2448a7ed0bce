/**
 * A command leads its own process group (pipes: `detached`; pty: the session leader), so a
 * signal reaches everything it started: `sh -c 'sleep 100'` is interrupted as a whole.
 */
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import { GROUP_KILL_WAIT_MS, GROUP_POLL_MS } from './constants.js'

/**
 * Sends `sig` to process group `pgid`; false when the group is gone. A guest's group is led
 * by bubblewrap's monitor (exec/sandbox.ts), which dies of any signal it gets and takes the
 * whole sandbox down with it, with no grace for the command: signals other than SIGKILL and
 * SIGSTOP go to the rest of its group instead.
 */
export function signalGroup (pgid: number, sig: NodeJS.Signals | 0): boolean {
  return sendToGroup(pgid, sig) !== 'gone'
}

/**
 * What a signal to a group reached: `reached` when a process that can act on it got it;
 * `none` when only bubblewrap's own processes were there (the command not forked yet: a
 * cancel right after the start must be sent again, or it waits out the grace for SIGKILL);
 * `gone` when the group is.
 */
type GroupSignalResult = 'reached' | 'none' | 'gone'

function sendToGroup (pgid: number, sig: NodeJS.Signals | 0): GroupSignalResult {
  if (sig !== 0 && sig !== 'SIGKILL' && sig !== 'SIGSTOP') {
    // Gone already, as after most commands (nothing left behind): one kill(2), no /proc read.
    if (sendToGroup(pgid, 0) === 'gone') return 'gone'
    if (isBwrap(pgid)) return signalGroupSparing(pgid, sig)
  }
  try {
    process.kill(-pgid, sig)
    return 'reached'
  } catch {
    // ESRCH: nothing left; EPERM cannot happen for our own children.
    return 'gone'
  }
}

/**
 * Whether `pid` runs bubblewrap: its monitor leads a sandboxed guest's group, and its PID 1 of
 * the namespace is in the group too.
 */
function isBwrap (pid: number | string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'bwrap'
  } catch {
    return false
  }
}

/**
 * `sig` to every process of group `pgid` but its leader. bubblewrap's PID 1 of the namespace
 * gets it too (it ignores it), but does not count as reached.
 */
function signalGroupSparing (pgid: number, sig: NodeJS.Signals): GroupSignalResult {
  let names: string[]
  try {
    names = fs.readdirSync('/proc')
  } catch {
    return 'reached'
  }
  let reached: GroupSignalResult = 'none'
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === pgid) continue
    try {
      if (parseStat(fs.readFileSync(`/proc/${name}/stat`, 'utf8')).pgrp !== pgid) continue
      process.kill(Number(name), sig)
      if (!isBwrap(name)) reached = 'reached'
    } catch {
      // it exited while we looked
    }
  }
  return reached
}

/** State and process group of a process, from /proc/PID/stat. */
function parseStat (stat: string): { state: string, pgrp: number } {
  // The command name may contain spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { state: fields[0] ?? '', pgrp: Number(fields[2]) }
}

/**
 * Whether any process of the group still runs. Zombies do not count: signalling a group of
 * zombies succeeds, and where PID 1 reaps orphans late (or never, as in a container whose
 * init is not a real init) waiting for them would hold the session for nothing.
 */
export async function groupAlive (pgid: number): Promise<boolean> {
  if (!signalGroup(pgid, 0)) return false
  let entries: string[]
  try {
    entries = await fsp.readdir('/proc')
  } catch {
    return true // no /proc: trust kill(0)
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue
    try {
      const { state, pgrp } = parseStat(await fsp.readFile(`/proc/${name}/stat`, 'utf8'))
      if (pgrp === pgid && state !== 'Z' && state !== 'X') return true
    } catch {
      // it exited while we looked
    }
  }
  return false
}

export function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * The foreground process group of the terminal that `pid` controls (`tpgid` in
 * /proc/PID/stat), where a terminal sends Ctrl-C: under a job-control shell it is the running
 * job, not the shell. Undefined where /proc is not available.
 */
export function foregroundGroup (pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const tpgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[5])
    return Number.isInteger(tpgid) && tpgid > 0 ? tpgid : undefined
  } catch {
    return undefined
  }
}

/**
 * Ends a process group gracefully first: `polite` now, SIGKILL after `graceMs` if anything is
 * left. A polite signal that reached no command yet (a sandbox still starting it) is sent
 * again at each poll until one gets it. Idempotent: a second call returns the first one's
 * promise, which resolves when the group is gone (or, for a group that will not die, e.g.
 * zombies nobody reaps, after GROUP_KILL_WAIT_MS more).
 */
export class GroupTerminator {
  private running: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private disposed = false

  constructor (readonly pgid: number, private readonly onGiveUp: (msg: string) => void = () => {}) {}

  terminate (polite: NodeJS.Signals, graceMs: number): Promise<void> {
    this.running ??= new Promise<void>((resolve) => {
      let sent = sendToGroup(this.pgid, polite)
      if (sent === 'gone') { resolve(); return }
      const start = Date.now()
      let killed = false
      const tick = async (): Promise<void> => {
        if (!await groupAlive(this.pgid)) { resolve(); return }
        if (sent === 'none' && !killed) sent = sendToGroup(this.pgid, polite)
        const elapsed = Date.now() - start
        if (!killed && elapsed >= graceMs) {
          killed = true
          signalGroup(this.pgid, 'SIGKILL')
        }
        if (elapsed >= graceMs + GROUP_KILL_WAIT_MS) {
          this.onGiveUp(`process group ${this.pgid} still exists ${elapsed} ms after ${polite}; giving up on it`)
          resolve()
          return
        }
        this.schedule(tick, GROUP_POLL_MS)
      }
      this.schedule(tick, Math.min(GROUP_POLL_MS, graceMs))
    })
    return this.running
  }

  /** Stops watching (the session is over); signals already sent stay sent. */
  dispose (): void {
    this.disposed = true
    clearTimeout(this.timer)
  }

  private schedule (tick: () => Promise<void>, ms: number): void {
    if (!this.disposed) this.timer = setTimeout(() => { void tick() }, ms)
  }
}
