/**
 * Empty directories on disk that runs take and give back: the scratch directory of a
 * `--no-sync` run (`$VGRID_HOME/scratch/N`) and a guest's private /tmp
 * (`$VGRID_HOME/guests/N`). Most runs leave theirs as they got it (`vbatch -N 300 --no-sync
 * true`): such a directory serves the next run instead of an rmdir now and a mkdir then. On
 * this project's VMs (ext4 without a journal) those took 60-140 µs each on the agent's main
 * thread, 5 % of a submitter's busy main thread in a fan-out and 10 % of an executor's
 * (`--cpu-prof`), where the check that it is empty is one readdir.
 *
 * A directory is taken back only in one of the shapes a run is handed (`shapes`: empty, or
 * holding one empty directory of a known name, the mount point a sandbox made there); one
 * with anything else in it, a file, a link, a directory with something in it, is the
 * caller's to remove, and is never handed out again. Its owner and mode stay as the run that
 * had it found them: the caller hands out a pool's directories to one kind of user only.
 */
import { mkdirSync, readdirSync, type Dirent } from 'node:fs'
import path from 'node:path'

/** Directories kept for reuse, per shape, at most: past that, they are removed as before. */
export const DIR_POOL_MAX = 64

export interface PooledDir {
  dir: string
  /** Made now: what a fresh directory needs (its owner) is still to be done. */
  fresh: boolean
}

export class DirPool {
  private readonly free = new Map<string, string[]>()
  private next = 0

  /**
   * `root` must exist and be empty (the agent clears it at start). `shapes`: the names of
   * the one empty directory a directory may hold when it comes back ('' for none).
   */
  constructor (private readonly root: string, private readonly shapes: readonly string[] = ['']) {}

  /** An empty directory, or one holding only an empty `shape` directory. */
  take (shape = ''): PooledDir {
    const kept = this.free.get(shape)?.pop()
    if (kept !== undefined) return { dir: kept, fresh: false }
    const dir = path.join(this.root, String(this.next++))
    mkdirSync(dir, { mode: 0o700 })
    if (shape !== '') mkdirSync(path.join(dir, shape))
    return { dir, fresh: true }
  }

  /**
   * Takes `dir` back when it is as it was handed out (true); false: the caller removes it.
   * Call only once nothing runs in it any more.
   */
  give (dir: string): boolean {
    const shape = this.shapeOf(dir)
    if (shape === undefined) return false
    let list = this.free.get(shape)
    if (list === undefined) { list = []; this.free.set(shape, list) }
    if (list.length >= DIR_POOL_MAX) return false
    list.push(dir)
    return true
  }

  private shapeOf (dir: string): string | undefined {
    let entries: Dirent[]
    try {
      entries = readdirSync(dir, { withFileTypes: true })
    } catch {
      return undefined
    }
    if (entries.length === 0) return ''
    if (entries.length > 1) return undefined
    const e = entries[0]!
    if (!e.isDirectory() || !this.shapes.includes(e.name)) return undefined
    try {
      return readdirSync(path.join(dir, e.name)).length === 0 ? e.name : undefined
    } catch {
      return undefined
    }
  }
}
