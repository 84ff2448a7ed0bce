/**
 * Workspace watches: the submitter's agent watches the directories of the workspaces it scans
 * (inotify, through `fs.watch`, one watch per directory), and the next scan reads again only
 * the directories where something happened since the last one began. The others' entries are
 * taken from that scan as they were: no readdir, no lstat. It is what git's fsmonitor with
 * watchman, Bazel's --watchfs and Mercurial's fsmonitor do for the same reason: an unchanged
 * tree of 10,000 files costs 10,000 lstats, and they were most of `vrun`'s time when nothing
 * changed.
 *
 * What inotify does not see, and what is done about it:
 * - Writes from other machines on a network file system: only local file systems are watched
 *   (statfs), and a directory on another device than the workspace's root is never watched,
 *   so it is read at every scan. A mount or unmount in the workspace (its lines of mountinfo
 *   changed) trusts nothing; one elsewhere (a container starting, a USB stick) changes
 *   nothing in it, and one over a directory above it makes the root another directory.
 * - A file with more than one hard link can be written through a directory that is not
 *   watched: a directory that holds one is read at every scan.
 * - Writes through a shared mmap() raise no event (inotify(7)). Such an edit is seen at the
 *   next event in its directory, or the next scan without the watch (VGRID_WATCH=off, or the
 *   agent's restart). git's fsmonitor has the same limit.
 * - A full event queue: libuv drops the overflow notice. A queue holds max_queued_events;
 *   whenever that many could have queued since a scan began (half of it arrived here), the
 *   next scan trusts nothing.
 * - Events still queued when a scan begins: the barrier writes a file in a directory watched
 *   through the same inotify descriptor, and waits for that event, which comes after them.
 * A directory whose scan warned (a fifo, an unreadable file) is read again every time, so
 * that the warning is too.
 */
import { mkdirSync, readFileSync, realpathSync, rmSync, statSync, statfsSync, watch, writeFileSync, type FSWatcher } from 'node:fs'
import path from 'node:path'
import { createLogger } from '../common/log.js'
import { IGNORE_FILE, type IgnoreRules } from './ignore-rules.js'
import { parentRel } from './paths.js'
import type { DirNode, FileNode, FileStatKey } from './types.js'

const log = createLogger('sync')

/** Trees watched at once (workspaces scanned, copies checked), the most recently used. */
export const MAX_WATCHED_TREES = 16
/**
 * Directories watched in all, at most (and at most a quarter of the user's inotify watches).
 * A watch costs ~1.4 KB of the agent's memory (5,000: +7 MB RSS here).
 */
export const MAX_WATCHED_DIRS = 8_192
/** How long a scan waits for its barrier's event before it trusts nothing. */
export const WATCH_BARRIER_TIMEOUT_MS = 2_000
/**
 * A tree of fewer entries than this is read whole, not watched: its walk costs less than the
 * barrier (a file written, its event awaited, the file removed) and the mount table's read.
 * A scan of one file took ~0.2 ms of CPU unwatched against ~0.8 watched here; at 32 entries
 * both were ~0.55.
 */
export const SMALL_TREE_ENTRIES = 32
/** The inotify queue's length when /proc does not say. */
const DEFAULT_MAX_QUEUED_EVENTS = 16_384

/** File systems whose changes all go through this kernel (statfs f_type). */
const LOCAL_FS_TYPES: ReadonlySet<number> = new Set([
  0xEF53, // ext2/3/4
  0x58465342, // xfs
  0x9123683E, // btrfs
  0x01021994, // tmpfs
  0xF2F52010, // f2fs
  0x2FC12FC1, // zfs
  0xCA451A4E // bcachefs
])

/** A file the last scan kept, with where it lies and its stat when the scan trusted it. */
export interface KeptFile {
  rel: string
  abs: string
  file: FileNode
  stat: FileStatKey | undefined
}

/** What a scan found in one directory: reused as it is while nothing happens there. */
export interface DirRecord {
  node: DirNode
  /** The ignore rules its entries were judged by (its own `.vgridignore` included). */
  rules: IgnoreRules
  files: KeptFile[]
}

interface Watched {
  w: FSWatcher
  dev: number
  ino: number
}

/** The agent's watches: the barrier, the event count, and one TreeWatch per workspace. */
export class WatchHub {
  /** Events received by every watch, since the start. */
  events = 0
  /** Directories watched, all workspaces together. */
  dirs = 0
  readonly maxDirs: number
  readonly overflowGuard: number
  private readonly trees = new Map<string, TreeWatch>()
  private readonly waiters = new Map<string, () => void>()
  private marks = 0
  private closed = false

  private constructor (private readonly markDir: string, private readonly markWatch: FSWatcher, maxDirs: number) {
    const queued = readProcNumber('/proc/sys/fs/inotify/max_queued_events') ?? DEFAULT_MAX_QUEUED_EVENTS
    this.overflowGuard = Math.max(1, Math.floor(queued / 2))
    const userWatches = readProcNumber('/proc/sys/fs/inotify/max_user_watches') ?? 8192
    this.maxDirs = Math.max(0, Math.min(maxDirs, Math.floor(userWatches / 4)))
    markWatch.on('change', (_type, name) => {
      const done = typeof name === 'string' ? this.waiters.get(name) : undefined
      if (done !== undefined) { this.waiters.delete(name as string); done() }
    })
    markWatch.on('error', () => { this.closed = true })
  }

  /**
   * A hub whose barrier file lies in `markDir` (emptied); undefined where fs.watch does not
   * work. `maxDirs`: MAX_WATCHED_DIRS unless a test says less.
   */
  static open (markDir: string, maxDirs = MAX_WATCHED_DIRS): WatchHub | undefined {
    try {
      rmSync(markDir, { recursive: true, force: true })
      mkdirSync(markDir, { recursive: true, mode: 0o700 })
      return new WatchHub(markDir, watch(markDir, { persistent: false }), maxDirs)
    } catch (err) {
      log.debug(`workspace watches are off: ${(err as Error).message}`)
      return undefined
    }
  }

  /** The watch of the workspace at `root` (absolute), made on first use. */
  tree (root: string): TreeWatch {
    let t = this.trees.get(root)
    if (t !== undefined) {
      this.trees.delete(root)
    } else {
      t = new TreeWatch(this, root)
      if (this.trees.size >= MAX_WATCHED_TREES) {
        const [oldest, old] = this.trees.entries().next().value as [string, TreeWatch]
        this.trees.delete(oldest)
        old.close()
      }
    }
    this.trees.set(root, t)
    return t
  }

  /**
   * Resolves once every event queued before the call has been handed to its watch: true,
   * or false when the barrier's own event did not come in time.
   */
  async barrier (): Promise<boolean> {
    if (this.closed) return false
    const name = String(++this.marks)
    const file = path.join(this.markDir, name)
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { this.waiters.delete(name); resolve(false) }, WATCH_BARRIER_TIMEOUT_MS)
      this.waiters.set(name, () => {
        clearTimeout(timer)
        rmSync(file, { force: true })
        resolve(true)
      })
      try {
        writeFileSync(file, '')
      } catch {
        clearTimeout(timer)
        this.waiters.delete(name)
        resolve(false)
      }
    })
  }

  close (): void {
    this.closed = true
    for (const t of this.trees.values()) t.close()
    this.trees.clear()
    this.markWatch.close()
    rmSync(this.markDir, { recursive: true, force: true })
  }
}

/** What one scan asks of a workspace's watch (TreeWatch.begin). */
export interface WatchedScan {
  /** The last scan's record of directory `rel`, when nothing happened in it since. */
  clean: (rel: string) => DirRecord | undefined
  /**
   * Whether nothing happened in directory `rel` since the last check that found the tree
   * whole walked it: no entry came, went or changed there (a write through mmap() aside).
   * For a check, which then calls `enter` and `record` as for a directory it read.
   */
  quiet: (rel: string) => boolean
  /** Before directory `rel` is read: watches it from now on, if it can be. */
  enter: (abs: string, rel: string) => void
  /** What the scan found in directory `rel`, for the next scan (a check records only that it walked it). */
  record: (rel: string, rec?: DirRecord) => void
  /** Directory `rel` must be read again next time (a warning in it, a hard link). */
  noisy: (rel: string) => void
  /**
   * The scan ended: its records stand for the next scan (ok), or nothing does. Once only.
   * `tag` names what the walk found the tree to be (a copy's root hash): quietTag.
   */
  finish: (ok: boolean, tag?: string) => void
  /** Ends a check that took the tree as quietTag says, unread: the last walk's records stand. */
  unread: () => void
  /**
   * The tag of the last walk when nothing at all happened in the tree since it began (every
   * directory it walked still watched): what it found still holds.
   */
  readonly quietTag: string | undefined
  /** Directories the scan reused or the check found quiet, without reading them (tests, logs). */
  readonly reused: number
}

/** One workspace's watches and the directory records of its last complete scan. */
export class TreeWatch {
  private readonly watchers = new Map<string, Watched>()
  /** Directories with events since the last scan began. */
  private dirty = new Set<string>()
  /** Directories whose whole subtree is to be read again (their ignore file changed). */
  private deep = new Set<string>()
  /** Trust nothing at the next scan. */
  private all = true
  private records = new Map<string, DirRecord | undefined>()
  private tag: string | undefined
  private eventsAt = 0
  private rootId: { dev: number, ino: number } | undefined
  private mounts = ''
  /** The root without symbolic links, as mount points are written; undefined: not known yet. */
  private realRoot: string | undefined
  private disabled = false
  private scanning = false

  constructor (private readonly hub: WatchHub, readonly root: string) {}

  /**
   * Starts a scan of the workspace: the barrier first, so that every event from before it is
   * counted. Undefined when this workspace is not watched (another scan of it runs, too many
   * directories, not a local file system, or `entries`, how many its last walk found when the
   * caller knows, is under SMALL_TREE_ENTRIES).
   */
  async begin (entries?: number): Promise<WatchedScan | undefined> {
    if (this.disabled || this.scanning) return undefined
    if (entries !== undefined && entries < SMALL_TREE_ENTRIES) {
      // (the next watched walk, once it has grown, trusts nothing of before)
      if (!this.all || this.watchers.size > 0) this.reset()
      return undefined
    }
    this.scanning = true
    let ok = false
    try {
      ok = await this.hub.barrier()
      const id = statSync(this.root)
      if (this.rootId === undefined) {
        const type = statfsSync(this.root).type
        if (!LOCAL_FS_TYPES.has(type)) return this.disable(`the file system (type 0x${type.toString(16)}) may change without telling this machine`)
      } else if (this.rootId.dev !== id.dev || this.rootId.ino !== id.ino) {
        this.reset()
        this.realRoot = undefined
      }
      this.rootId = { dev: id.dev, ino: id.ino }
      this.realRoot ??= realpathSync(this.root)
      const mounts = readMounts(this.realRoot)
      if (mounts !== this.mounts) { this.mounts = mounts; ok = false }
    } catch (err) {
      this.scanning = false
      return this.disable((err as Error).message)
    }
    const trustNothing = !ok || this.all || this.hub.events - this.eventsAt >= this.hub.overflowGuard
    const dirty = this.dirty
    const deep = this.deep
    const prev = trustNothing ? new Map<string, DirRecord | undefined>() : this.records
    const quietTag = !trustNothing && dirty.size === 0 && deep.size === 0 && prev.size > 0 &&
      [...prev.keys()].every((rel) => this.watchers.has(rel))
      ? this.tag
      : undefined
    this.dirty = new Set()
    this.deep = new Set()
    this.all = false
    this.eventsAt = this.hub.events
    const next = new Map<string, DirRecord | undefined>()
    const visited = new Set<string>()
    const noisy = new Set<string>()
    let reused = 0
    let ended = false
    const underDeep = (rel: string): boolean => {
      if (deep.size === 0) return false
      for (let r = rel; ; r = parentRel(r)) {
        if (deep.has(r)) return true
        if (r === '') return false
      }
    }
    const prevTag = trustNothing ? undefined : this.tag
    const quietDir = (rel: string): boolean => !dirty.has(rel) && this.watchers.has(rel) && !underDeep(rel)
    return {
      clean: (rel) => {
        const rec = prev.get(rel)
        if (rec === undefined || !quietDir(rel)) return undefined
        visited.add(rel)
        reused++
        return rec
      },
      quiet: (rel) => {
        // (a scan's records say what it found, not that it was a tree's: only a check's count)
        if (prevTag === undefined || !prev.has(rel) || !quietDir(rel)) return false
        reused++
        return true
      },
      enter: (abs, rel) => {
        visited.add(rel)
        this.watchDir(abs, rel)
      },
      record: (rel, rec) => { next.set(rel, rec) },
      quietTag,
      noisy: (rel) => { noisy.add(rel) },
      finish: (done, tag) => {
        if (ended) return
        ended = true
        this.scanning = false
        if (this.disabled) return
        for (const rel of noisy) next.delete(rel)
        this.records = done ? next : new Map()
        this.tag = done ? tag : undefined
        if (!done) this.all = true
        for (const [rel, w] of this.watchers) if (!visited.has(rel)) this.unwatch(rel, w)
      },
      unread: () => {
        if (ended) return
        ended = true
        this.scanning = false
      },
      get reused () { return reused }
    }
  }

  /** Watches directory `rel` unless it is already (the same directory) or cannot be. */
  private watchDir (abs: string, rel: string): void {
    if (this.disabled) return
    const had = this.watchers.get(rel)
    let before
    try {
      before = statSync(abs)
    } catch {
      if (had !== undefined) this.unwatch(rel, had)
      return
    }
    if (had !== undefined) {
      if (had.dev === before.dev && had.ino === before.ino) return
      this.unwatch(rel, had)
    }
    // A directory of another file system (a mount inside the workspace) is read every time.
    if (before.dev !== this.rootId?.dev) return
    if (this.hub.dirs >= this.hub.maxDirs) {
      this.disable(`more than ${this.hub.maxDirs} directories to watch`)
      return
    }
    let w: FSWatcher
    try {
      w = watch(abs, { persistent: false })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOSPC' || code === 'EMFILE') this.disable(`inotify: ${(err as Error).message}`)
      return
    }
    const self = path.basename(abs)
    const entry: Watched = { w, dev: before.dev, ino: before.ino }
    w.on('change', (_type, name) => { this.event(rel, entry, self, name) })
    w.on('error', () => { this.all = true; this.unwatch(rel, entry) })
    this.hub.dirs++
    this.watchers.set(rel, entry)
    // replaced between the stat and the watch: the watch may be on the old one
    let after
    try { after = statSync(abs) } catch { after = undefined }
    if (after?.dev !== before.dev || after.ino !== before.ino) this.unwatch(rel, entry)
  }

  private event (rel: string, entry: Watched, self: string, name: string | Buffer | null): void {
    this.hub.events++
    if (typeof name !== 'string') {
      this.all = true
      return
    }
    this.dirty.add(rel)
    if (name === IGNORE_FILE) this.deep.add(rel)
    // the entry, if it is a directory, may have been replaced or made unreadable
    this.dirty.add(rel === '' ? name : `${rel}/${name}`)
    // libuv names the directory itself for its own deletion, move or unwatching: its watch
    // is then gone (a new directory there, even with the same inode number, needs a new one)
    if (name === self) {
      this.dirty.add(parentRel(rel))
      this.unwatch(rel, entry)
    }
  }

  private unwatch (rel: string, entry: Watched): void {
    if (this.watchers.get(rel) !== entry) return
    this.watchers.delete(rel)
    entry.w.close()
    this.hub.dirs--
  }

  private reset (): void {
    for (const [rel, w] of this.watchers) this.unwatch(rel, w)
    this.records = new Map()
    this.tag = undefined
    this.all = true
  }

  private disable (why: string): undefined {
    if (!this.disabled) log.debug(`${this.root}: not watched: ${why}`)
    this.disabled = true
    this.reset()
    return undefined
  }

  close (): void {
    this.disabled = true
    this.reset()
  }

  /** Directories watched now (tests). */
  get watching (): number {
    return this.watchers.size
  }
}

function readProcNumber (file: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(file, 'utf8'), 10)
    return Number.isSafeInteger(n) && n > 0 ? n : undefined
  } catch {
    return undefined
  }
}

/**
 * The lines of the mount table (as this process sees it) whose mount point is `root` or lies
 * in it ('' where the table cannot be read). A mount point is the fifth field, with space,
 * tab, newline and backslash written as octal escapes (proc_pid_mountinfo(5)).
 */
export function readMounts (root: string): string {
  let table: string
  try { table = readFileSync('/proc/self/mountinfo', 'utf8') } catch { return '' }
  const inside = root === '/' ? '/' : root + '/'
  let out = ''
  for (const line of table.split('\n')) {
    const at = line.split(' ')[4]
    if (at === undefined) continue
    const p = at.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)))
    if (p === root || p.startsWith(inside)) out += line + '\n'
  }
  return out
}
