/**
 * Where the agent keeps what exists only while it runs and holds no data: the FIFOs that
 * become commands' stdio (exec/fifos.ts) and its guests' homes (a socket and a mount point
 * each, guest-run.ts). A command started here makes and removes a handful of these; a
 * fan-out, thousands a second.
 *
 * In memory when the machine offers a place for it: `$XDG_RUNTIME_DIR` (made for "sockets,
 * named pipes" by the XDG spec; systemd gives every user one), else `/dev/shm`, each only
 * where it is a tmpfs. On a disk every such name costs an inode allocation, and on ext4
 * without a journal (this project's VMs) each one scans the recently deleted inodes of its
 * group: in a `vbatch -N 300` fan-out that scan took 12 % of the machine's CPU (`perf`:
 * `find_inode_bit`/`recently_deleted` under mkdir, mknod and bind). Where neither is usable,
 * it is `$VGRID_HOME/run`, as before.
 *
 * The name is fixed by the home (one agent per home, home-lock.ts), so a restart after a
 * crash finds and clears what the killed agent left; a `home` file in it names the home, so
 * what an agent whose home is gone left is swept (`sweepRuntimeDirs`). In /dev/shm, which
 * every user may write, a directory of that name is used only if it is this user's, not a
 * link, and 0700; one that another user made first sends the agent back to its home.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { createLogger } from '../common/log.js'

const log = createLogger('agent')

/** statfs(2)'s f_type of a tmpfs. */
const TMPFS_MAGIC = 0x01021994

/** Under the home, where no tmpfs is usable. */
export const HOME_RUNTIME_DIR = 'run'

export interface RuntimeDir {
  dir: string
  /** In memory (a tmpfs), or the home's `run` directory. */
  inMemory: boolean
}

function isTmpfs (dir: string): boolean {
  try {
    return fs.statfsSync(dir).type === TMPFS_MAGIC
  } catch {
    return false
  }
}

/** Makes `dir` 0700, or takes it if it is already this user's own private directory. */
function claim (dir: string): boolean {
  try {
    fs.mkdirSync(dir, { mode: 0o700 })
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return false
  }
  const st = fs.lstatSync(dir, { throwIfNoEntry: false })
  return st !== undefined && st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o777) === 0o700
}

/** In each place: where the directories of this user's agents are, and their names' prefix. */
function places (env: NodeJS.ProcessEnv): Array<{ base: string, prefix: string }> {
  const out: Array<{ base: string, prefix: string }> = []
  const xdg = env.XDG_RUNTIME_DIR
  if (xdg !== undefined && path.isAbsolute(xdg) && isTmpfs(xdg)) out.push({ base: xdg, prefix: 'vgrid-' })
  if (isTmpfs('/dev/shm')) out.push({ base: '/dev/shm', prefix: `vgrid-${process.getuid?.() ?? 0}-` })
  return out
}

/** The candidates for the agent of `home`, best first. */
export function runtimeCandidates (home: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const id = crypto.createHash('sha256').update(path.resolve(home)).digest('hex').slice(0, 16)
  return places(env).map((p) => path.join(p.base, `${p.prefix}${id}`))
}

/** The file in a runtime directory that names its agent's home. */
const HOME_MARK = 'home'

/**
 * The agent of `home`'s runtime directory, made (0700) and emptied of what a previous run
 * left. Call once at start, under the home's lock.
 */
export function openRuntimeDir (home: string, env: NodeJS.ProcessEnv = process.env): RuntimeDir {
  for (const dir of runtimeCandidates(home, env)) {
    if (claim(dir)) {
      emptyDir(dir)
      fs.writeFileSync(path.join(dir, HOME_MARK), path.resolve(home))
      return { dir, inMemory: true }
    }
    log.warn(`${dir} is not this user's private directory (another user or a program made it): not used`)
  }
  const dir = path.join(home, HOME_RUNTIME_DIR)
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  return { dir, inMemory: false }
}

/** Removes what the runtime directory holds (it may be a directory nobody else may enter: kept). */
function emptyDir (dir: string): void {
  for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name), { recursive: true, force: true })
}

/** Removes the runtime directory when the agent stops: in memory, it would hold RAM until a reboot. */
export function removeRuntimeDir (rt: RuntimeDir): void {
  fs.rmSync(rt.dir, { recursive: true, force: true })
}

/**
 * Removes this user's runtime directories whose agent's home is gone (its agent was killed,
 * then its home deleted): nothing else would ever free them. Those of live homes are left.
 */
export function sweepRuntimeDirs (env: NodeJS.ProcessEnv = process.env): void {
  for (const { base, prefix } of places(env)) {
    let names: string[]
    try {
      names = fs.readdirSync(base).filter((n) => n.startsWith(prefix) && /^[0-9a-f]{16}$/.test(n.slice(prefix.length)))
    } catch {
      continue
    }
    for (const name of names) {
      const dir = path.join(base, name)
      let home: string
      try {
        const st = fs.lstatSync(dir)
        if (!st.isDirectory() || st.uid !== process.getuid?.()) continue
        home = fs.readFileSync(path.join(dir, HOME_MARK), 'utf8')
      } catch {
        continue
      }
      if (!path.isAbsolute(home) || fs.existsSync(home)) continue
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}
