/**
 * Commands outlive an agent that is killed with SIGKILL (or crashes): they lead their own
 * process groups, so nothing takes them down. Each running command's group is written down in
 * `$VGRID_HOME/running.log` while it runs; the next start of the agent stops the groups still
 * listed, so a task that is marked lost, or placed again, never also runs on in the dark.
 *
 * The log is one line appended per command started (`{"a":PGID,"boot":…,"start":…,"task":…}`)
 * and one per command ended (`{"r":PGID}`), on a descriptor kept open; it is rewritten with
 * only the groups still running every COMPACT_AFTER_LINES lines. (A file per command, created
 * and removed, cost ~0.7 ms of the agent's main thread per start in a fan-out on ext4: a new
 * inode each time, in a directory where as many had just been freed.) A line torn by a crash
 * is skipped when the log is read; groups listed by an earlier agent, one file each in
 * `running/`, are read too.
 *
 * A command is listed right after its fork (spawn's onPid): an agent killed in the instant
 * between the two, which on a busy machine can be after the command has already run its
 * first lines, leaves that one command unlisted. Closing the gap would need the listing
 * before the pid exists.
 *
 * A pid is reused by the system in time: a group is signalled only when the process that led
 * it is still the same one, known by the boot it ran in and its start time (/proc/PID/stat).
 */
import fs from 'node:fs'
import path from 'node:path'
import { signalGroup } from './process-group.js'

export interface GroupLedger {
  /** The group led by `pgid` runs a command now (of task `task`, when it is one). */
  add (pgid: number, task?: string): void
  /** It ended (every process of the group is gone or was killed). */
  remove (pgid: number): void
}

interface Identity { boot: string, start: string }
const TASK_ID_RE = /^[0-9a-f]{16}$/

let boot: { id: string | undefined } | undefined

/** This boot's id: read once, it cannot change while we run. */
function bootId (): string | undefined {
  if (boot !== undefined) return boot.id
  try {
    boot = { id: fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() }
  } catch {
    boot = { id: undefined }
  }
  return boot.id
}

/** Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. */
function startTime (pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

function identity (pid: number): Identity | undefined {
  const boot = bootId()
  const start = startTime(pid)
  return boot === undefined || start === undefined ? undefined : { boot, start }
}

/** The log of running groups, in the agent's home. */
export const RUNNING_LOG = 'running.log'
/** Where an earlier agent listed them, one file per group. */
const LEGACY_DIR = 'running'
/** Lines appended before the log is rewritten with only the groups still running. */
export const COMPACT_AFTER_LINES = 4096
/** A log larger than this is not read (it cannot be one this code wrote): nothing is stopped. */
const MAX_LOG_BYTES = 64 * 1024 * 1024

type Listed = Partial<Identity> & { task?: unknown }

export class OrphanLedger implements GroupLedger {
  /** The add line of each group listed and not yet removed. */
  private readonly live = new Map<number, string>()
  private lines = 0

  private constructor (private readonly file: string, private fd: number | undefined) {}

  /**
   * Stops the groups a previous run of the agent left running (SIGKILL: their tasks are over
   * for the grid), clears the list, and returns how many were stopped and the tasks they ran.
   */
  static open (home: string): { ledger: OrphanLedger, stopped: number, tasks: string[] } {
    const file = path.join(home, RUNNING_LOG)
    const listed = new Map<number, Listed>()
    readLegacy(path.join(home, LEGACY_DIR), listed)
    readLog(file, listed)
    let stopped = 0
    const tasks: string[] = []
    for (const [pgid, was] of listed) {
      const now = identity(pgid)
      if (now !== undefined && was.boot === now.boot && was.start === now.start && signalGroup(pgid, 'SIGKILL')) {
        stopped++
        if (typeof was.task === 'string' && TASK_ID_RE.test(was.task)) tasks.push(was.task)
      }
    }
    let fd: number | undefined
    try {
      fd = fs.openSync(file, 'w', 0o600)
    } catch {}
    return { ledger: new OrphanLedger(file, fd), stopped, tasks }
  }

  add (pgid: number, task?: string): void {
    const id = identity(pgid)
    // Without /proc the group cannot be told from a later one with its number: not listed.
    if (id === undefined) return
    const line = JSON.stringify(task !== undefined ? { a: pgid, ...id, task } : { a: pgid, ...id }) + '\n'
    this.live.set(pgid, line)
    this.append(line)
  }

  remove (pgid: number): void {
    if (!this.live.delete(pgid)) return
    this.append(`{"r":${pgid}}\n`)
  }

  private append (line: string): void {
    if (this.fd === undefined) return
    try {
      fs.writeSync(this.fd, line)
    } catch {}
    if (++this.lines >= COMPACT_AFTER_LINES) this.compact()
  }

  /** The log rewritten with the groups still running (temporary file + rename). */
  private compact (): void {
    this.lines = 0
    const tmp = `${this.file}.tmp`
    try {
      fs.writeFileSync(tmp, [...this.live.values()].join(''), { mode: 0o600 })
      fs.renameSync(tmp, this.file)
      const fd = fs.openSync(this.file, 'a', 0o600)
      if (this.fd !== undefined) fs.closeSync(this.fd)
      this.fd = fd
    } catch {}
  }
}

/** Groups listed by an earlier agent, one file each; the files and their directory go. */
function readLegacy (dir: string, listed: Map<number, Listed>): void {
  let names: string[]
  try {
    names = fs.readdirSync(dir)
  } catch {
    return
  }
  for (const name of names) {
    const file = path.join(dir, name)
    const pgid = Number(name)
    if (/^\d+$/.test(name) && pgid > 1) {
      try {
        listed.set(pgid, JSON.parse(fs.readFileSync(file, 'utf8')) as Listed)
      } catch {}
    }
  }
  fs.rmSync(dir, { recursive: true, force: true })
}

/** The groups the log lists and does not say ended; torn or foreign lines are skipped. */
function readLog (file: string, listed: Map<number, Listed>): void {
  let text: string
  try {
    if (fs.statSync(file).size > MAX_LOG_BYTES) return
    text = fs.readFileSync(file, 'utf8')
  } catch {
    return
  }
  for (const line of text.split('\n')) {
    let o: unknown
    try {
      o = JSON.parse(line)
    } catch {
      continue
    }
    if (typeof o !== 'object' || o === null) continue
    const { a, r } = o as { a?: unknown, r?: unknown }
    if (typeof a === 'number' && Number.isSafeInteger(a) && a > 1) listed.set(a, o as Listed)
    else if (typeof r === 'number') listed.delete(r)
  }
}
