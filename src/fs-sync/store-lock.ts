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
/** Tries to create the lock after removing a stale one before giving up (another process keeps winning). */
const LOCK_ATTEMPTS = 3

/** What link(2) fails with where a file system has no hard links. */
const NO_LINK_CODES = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'])

/** Directories (real paths) whose store this process has open. */
const held = new Set<string>()

export class StoreLock {
  private constructor (readonly dir: string, private readonly file: string) {}

  static async acquire (dir: string): Promise<StoreLock> {
    const real = await fsp.realpath(dir)
    if (held.has(real)) {
      throw new VgridError('ERR_BAD_ARGUMENT', `the chunk store in ${dir} is already open in this process`,
        'open it once and share the ChunkStore')
    }
    // taken before the first await below, so two opens racing in this process cannot both pass
    held.add(real)
    const file = path.join(real, STORE_LOCK_FILE)
    try {
      for (let attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
        if (await createLock(file)) return new StoreLock(real, file)
        const pid = await readPid(file)
        if (pid !== undefined && pid !== process.pid && pidAlive(pid)) {
          throw new VgridError('ERR_BAD_ARGUMENT', `the chunk store in ${dir} is in use by process ${pid}`,
            `stop that agent or give this one its own VGRID_HOME; if process ${pid} is not a vgrid agent, delete ${file}`)
        }
        await fsp.rm(file, { force: true })
      }
      throw new VgridError('ERR_BAD_ARGUMENT', `could not lock the chunk store in ${dir}: other processes keep taking it`)
    } catch (err) {
      held.delete(real)
      throw err
    }
  }

  /** Removes the lock file if it is still ours. */
  async release (): Promise<void> {
    try {
      if (await readPid(this.file) === process.pid) await fsp.rm(this.file, { force: true })
    } finally {
      held.delete(this.dir)
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
