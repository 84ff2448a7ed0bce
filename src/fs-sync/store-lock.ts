/**
 * One chunk store per directory: `store.lock` holds the pid of the process that has it open.
 * Two agents sharing a store would each assume they alone append to the current pack.
 *
 * The lock file is created whole with link(2) (a temporary file with the pid, linked to the
 * lock name, which fails if it exists), so nobody ever reads a half-written lock. A lock whose
 * pid is dead is stale (the agent crashed) and is taken over. Our own pid in a lock this
 * process does not hold is stale too: in a container the agent often gets the same pid on
 * every start. Two processes taking over the same stale lock at the same instant can race;
 * that needs a crash and two simultaneous starts on one VGRID_HOME, and we accept it.
 */
import fsp from 'node:fs/promises'
import path from 'node:path'
import { VgridError } from '../common/errors.js'

export const STORE_LOCK_FILE = 'store.lock'
export const HOME_LOCK_FILE = 'agent.lock'
/** Tries to create the lock after removing a stale one before giving up (another process keeps winning). */
const LOCK_ATTEMPTS = 3

/** What link(2) fails with where a file system has no hard links. */
const NO_LINK_CODES = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'])

/** Directories (real paths) whose store this process has open. */
const held = new Set<string>()

export class StoreLock {
  private constructor (private readonly file: string) {}

  static async acquire (dir: string): Promise<StoreLock> {
    return await StoreLock.take(dir, STORE_LOCK_FILE, (pid, file) => new VgridError('ERR_BAD_ARGUMENT', `the chunk store in ${dir} is in use by process ${pid}`,
      `stop that agent or give this one its own VGRID_HOME; if process ${pid} is not a vgrid agent, delete ${file}`), `the chunk store in ${dir}`)
  }

  /**
   * The agent's whole home (`agent.lock`), taken before anything in it is read or made: two
   * agents started at once on a fresh home each created keys, and the loser could leave its
   * own identity or swarm key behind (another peer id, even another grid).
   */
  static async acquireHome (home: string): Promise<StoreLock> {
    return await StoreLock.take(home, HOME_LOCK_FILE, (pid, file) => new VgridError('ERR_BAD_ARGUMENT', `an agent is already running with this home (${home}): process ${pid}`,
      `stop it first, or give this agent its own home with VGRID_HOME=DIR; if process ${pid} is not a vgrid agent, delete ${file}`), `the agent home ${home}`)
  }

  private static async take (dir: string, name: string, inUse: (pid: number, file: string) => VgridError, what: string): Promise<StoreLock> {
    const real = await fsp.realpath(dir)
    const key = path.join(real, name)
    if (held.has(key)) throw new VgridError('ERR_BAD_ARGUMENT', `${what} is already open in this process`, 'open it once and share it')
    // taken before the first await below, so two opens racing in this process cannot both pass
    held.add(key)
    try {
      for (let attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
        if (await createLock(key)) return new StoreLock(key)
        const pid = await readPid(key)
        if (pid !== undefined && pid !== process.pid && pidAlive(pid)) throw inUse(pid, key)
        await fsp.rm(key, { force: true })
      }
      throw new VgridError('ERR_BAD_ARGUMENT', `could not lock ${what}: other processes keep taking it`)
    } catch (err) {
      held.delete(key)
      throw err
    }
  }

  /** Removes the lock file if it is still ours. */
  async release (): Promise<void> {
    try {
      if (await readPid(this.file) === process.pid) await fsp.rm(this.file, { force: true })
    } finally {
      held.delete(this.file)
    }
  }
}

/** True when the lock file was created holding our pid; false when one exists. */
async function createLock (file: string): Promise<boolean> {
  const tmp = `${file}.${process.pid}.tmp`
  await fsp.writeFile(tmp, `${process.pid}\n`)
  try {
    await fsp.link(tmp, file)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return false
    if (!NO_LINK_CODES.has(code ?? '')) throw err
    // a file system without hard links: create and write in two steps instead
    try {
      await fsp.writeFile(file, `${process.pid}\n`, { flag: 'wx' })
      return true
    } catch (err2) {
      if ((err2 as NodeJS.ErrnoException).code === 'EEXIST') return false
      throw err2
    }
  } finally {
    await fsp.rm(tmp, { force: true })
  }
}

/** The pid in a lock file; undefined when it is gone or holds no pid (stale either way). */
async function readPid (file: string): Promise<number | undefined> {
  let text: string
  try {
    text = await fsp.readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const pid = Number(text.trim())
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
}

function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists but belongs to another user, which still holds the lock
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
