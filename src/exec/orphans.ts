/**
 * Commands outlive an agent that is killed with SIGKILL (or crashes): they lead their own
 * process groups, so nothing takes them down. Each running command's group is written down in
 * `$VGRID_HOME/running/` while it runs; the next start of the agent stops the groups still
 * listed, so a task that is marked lost, or placed again, never also runs on in the dark.
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

export class OrphanLedger implements GroupLedger {
  private constructor (private readonly dir: string) {}

  /**
   * Stops the groups a previous run of the agent left running (SIGKILL: their tasks are over
   * for the grid), clears the list, and returns how many were stopped and the tasks they ran.
   */
  static open (home: string): { ledger: OrphanLedger, stopped: number, tasks: string[] } {
    const dir = path.join(home, 'running')
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    let stopped = 0
    const tasks: string[] = []
    for (const name of fs.readdirSync(dir)) {
      const file = path.join(dir, name)
      const pgid = Number(name)
      if (/^\d+$/.test(name) && pgid > 1) {
        let was: Partial<Identity> & { task?: unknown } = {}
        try {
          was = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Identity>
        } catch {}
        const now = identity(pgid)
        if (now !== undefined && was.boot === now.boot && was.start === now.start && signalGroup(pgid, 'SIGKILL')) {
          stopped++
          if (typeof was.task === 'string' && TASK_ID_RE.test(was.task)) tasks.push(was.task)
        }
      }
      fs.rmSync(file, { force: true })
    }
    return { ledger: new OrphanLedger(dir), stopped, tasks }
  }

  add (pgid: number, task?: string): void {
    const id = identity(pgid)
    // Without /proc the group cannot be told from a later one with its number: not listed.
    if (id === undefined) return
    try {
      fs.writeFileSync(path.join(this.dir, String(pgid)), JSON.stringify(task !== undefined ? { ...id, task } : id), { mode: 0o600 })
    } catch {}
  }

  remove (pgid: number): void {
    fs.rmSync(path.join(this.dir, String(pgid)), { force: true })
  }
}
