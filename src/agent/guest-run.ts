/**
 * What a guest command gets on this machine besides its workspace: its own home (a socket for
 * nested vrun/vbatch that accepts only what a task may do, see guest-control.ts), a private
 * /tmp, an environment without the agent's, its cores, the device nodes of its GPUs, and,
 * unless the owner chose `--isolation none`, the sandbox around all of it.
 *
 * On this machine the task has two directories (removed when the run ends, and at the
 * agent's next start after a crash):
 *   RUNTIME/guests/TASK/            the guest's $VGRID_HOME (/run/vgrid in the sandbox), in the
 *                                   agent's runtime directory (runtime-dir.ts: in memory)
 *   RUNTIME/guests/TASK/agent.sock  the task's socket
 *   RUNTIME/guests/TASK/bin/        mount point of the vgrid commands
 *   $VGRID_HOME/guests/N/           the guest's /tmp, on disk: a guest may write gigabytes
 *                                   there; one it left empty serves the next guest (dir-pool.ts)
 */
import fs from 'node:fs/promises'
import { chownSync, existsSync, lchownSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmdirSync, rmSync, writeFileSync, type Dirent } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { removeTree, type SyncCopyResult } from '../fs-sync/index.js'
import { gpuVendor } from '../exec/environment.js'
import type { LentGpu } from '../exec/types.js'
import { within, type Sandbox, type SandboxMount } from '../exec/sandbox.js'
import { VgridError } from '../common/errors.js'
import { DirPool } from './dir-pool.js'
import type { GuestScope } from './guest-control.js'
import type { Isolation } from './isolation.js'

/** Where the guest finds its home inside the sandbox. */
export const GUEST_HOME = '/run/vgrid'
/** Where a run without a workspace (--no-sync) works inside the sandbox. */
export const GUEST_SCRATCH = '/tmp/work'
/** Variables of the agent's environment a guest keeps: where programs are, language and time zone. */
const GUEST_ENV_KEEP = /^(PATH|LANG|LANGUAGE|LC_[A-Z]+|TZ)$/
/** NVIDIA's nodes every CUDA program opens besides its GPUs'. */
const NVIDIA_CONTROL_NODES = ['nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools', 'nvidia-modeset']

export interface GuestDirs {
  /** The guest's $VGRID_HOME, in the runtime directory: its socket, and `bin/`. */
  home: string
  /** `$VGRID_HOME/guests/N`: the guest's /tmp. */
  tmp: string
}

/** Where guests' directories go: the agent's home (on disk) and its runtime directory. */
export interface GuestRoots {
  disk: string
  runtime: string
}

/** Removes what guests of a previous run of the agent left (it was killed). */
export async function clearGuestDirs (roots: GuestRoots): Promise<void> {
  for (const top of [roots.disk, roots.runtime]) {
    const root = path.join(top, 'guests')
    await removeTree(root).catch(() => {})
    await fs.mkdir(root, { recursive: true, mode: 0o700 })
  }
}

/**
 * Makes the task's home, and takes its /tmp from `tmps` (dir-pool.ts: an empty one a guest
 * before it left as it got it, or a new one), owned by the guest user when the agent is root.
 * Blocking, as the hand-over below: each call is microseconds of metadata, where a
 * thread-pool round trip each (ten of them before a guest's start) cost its command ~5 ms on
 * a busy machine. `scratch`: the run has no workspace, and the sandbox mounts its scratch
 * directory at GUEST_SCRATCH, whose mount point its /tmp then holds already.
 */
export function makeGuestDirs (runtime: string, task: string, tmps: DirPool, owner?: { uid: number, gid: number }, scratch = false): GuestDirs {
  const home = path.join(runtime, 'guests', task)
  // Each by itself: the parent exists (clearGuestDirs), and `recursive` tries the deepest first.
  for (const d of [home, path.join(home, 'bin')]) {
    try { mkdirSync(d, { mode: 0o700 }) } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err }
  }
  const tmp = tmps.take(scratch ? SCRATCH_MOUNT_POINT : '')
  // A directory from the pool is the guest user's already: every guest here runs as that one user.
  const owned = tmp.fresh ? [home, tmp.dir] : [home]
  if (owner !== undefined) for (const d of owned) chownSync(d, owner.uid, owner.gid)
  return { home, tmp: tmp.dir }
}

/** The mount point of a scratch run's workspace in its /tmp (GUEST_SCRATCH's name). */
const SCRATCH_MOUNT_POINT = path.basename(GUEST_SCRATCH)

/** The guests' /tmp directories on disk, `$VGRID_HOME/guests/N`, kept empty for the next guest (dir-pool.ts). */
export function guestTmpPool (home: string): DirPool {
  return new DirPool(path.join(home, 'guests'), [SCRATCH_MOUNT_POINT])
}

/**
 * Hands a directory the guest works in to the guest user (the agent is root and wrote it):
 * every entry, links themselves and not what they point to. Entries it owns already are
 * left alone.
 */
export async function chownTree (root: string, owner: { uid: number, gid: number }): Promise<void> {
  const walk = async (dir: string, entries: Dirent[]): Promise<void> => {
    await Promise.all(entries.map(async (e) => {
      const p = path.join(dir, e.name)
      // Only where it differs: a chown marks the ctime, which the copy check (copy-check.ts) compares.
      const st = await fs.lstat(p)
      if (st.uid !== owner.uid || st.gid !== owner.gid) await fs.lchown(p, owner.uid, owner.gid)
      if (st.isDirectory()) await walk(p, await fs.readdir(p, { withFileTypes: true }))
    }))
  }
  // The top blocking: a command's scratch directory is empty, and is handed over with no
  // thread-pool round trip.
  const st = lstatSync(root)
  if (!st.isDirectory()) return
  if (st.uid !== owner.uid || st.gid !== owner.gid) chownSync(root, owner.uid, owner.gid)
  await walk(root, readdirSync(root, { withFileTypes: true }))
}

/**
 * Beside a copy: the guest user it was last handed to whole (`uid:gid`). A copy whose marker
 * names the same user is the guest's already, but for what a sync made since: a copy no
 * sync touched (SyncCopyResult.untouched) skips the walk, and one a sync changed has only
 * what the sync made handed over (SyncCopyResult.made). An unchanged 10,000-file workspace
 * cost the executor ~0.47 s of its main thread per run in this walk; a changed one, ~0.2 s.
 */
export const HANDED_OVER_SUFFIX = '.guest-owner'

/** What the hand-over needs of the copy's sync for this run. */
type CopySync = Pick<SyncCopyResult, 'untouched' | 'made' | 'fresh'>

async function handOver (root: string, owner: { uid: number, gid: number } | undefined, copy: CopySync): Promise<void> {
  // Not root: the command writes the copy as the agent's own user.
  if (owner === undefined) { forgetHandOver(root); return }
  const marker = root + HANDED_OVER_SUFFIX
  const who = `${owner.uid}:${owner.gid}`
  let handed = false
  try { handed = readFileSync(marker, 'utf8') === who } catch {}
  if (handed && copy.untouched === true) return
  // Gone first: a hand-over cut short must not leave a marker that says it finished.
  rmSync(marker, { force: true })
  if ((handed || copy.fresh === true) && copy.made !== undefined) {
    // A fresh copy holds only what the sync made: no walk either.
    if (!handed) lchownSync(root, owner.uid, owner.gid)
    // lchown: a link made is handed over itself, never what it points to. Blocking: a few
    // microseconds of metadata each, where 10,000 thread-pool round trips took ~0.3 s.
    for (const rel of copy.made) lchownSync(path.join(root, rel), owner.uid, owner.gid)
  } else {
    await chownTree(root, owner)
  }
  writeFileSync(marker, who, { mode: 0o600 })
}

/** A command that runs in the copy as someone else (no sandbox): the next guest's walk is whole. */
export function forgetHandOver (root: string): void {
  rmSync(root + HANDED_OVER_SUFFIX, { force: true })
}

/**
 * Removes the task's directories. After a sandboxed run, blocking: when they hold nothing but
 * directories (theirs, and the mount points the sandbox made in its /tmp for the workspace
 * and vgrid's own files when those lie under /tmp), at most REMOVE_BLOCKING_DIRS, each goes
 * with one rmdir, microseconds of metadata, where the recursive removal was a dozen
 * thread-pool round trips and more per mount point. Only there: every process of a sandbox
 * is gone with it, so no entry can turn into a link between the look and the rmdir (rmdir
 * itself never follows one). Anything else, and an unconfined guest's directories, go
 * through the recursive removal, which never follows a link either.
 */
export async function removeGuestDirs (dirs: GuestDirs, sandboxed = false, tmps?: DirPool): Promise<void> {
  const budget = { left: REMOVE_BLOCKING_DIRS }
  if (!(sandboxed && removeEmptyDirs(dirs.home, budget))) await removeTree(dirs.home).catch(() => {})
  // As the guest got it: kept for the next one. Nothing of the sandbox runs any more, and an
  // unconfined guest never sees this directory (its /tmp is the machine's).
  if (tmps?.give(dirs.tmp) === true) return
  if (!(sandboxed && removeEmptyDirs(dirs.tmp, budget))) await removeTree(dirs.tmp).catch(() => {})
}

/** Directories a sandboxed guest's removal takes blocking, at most. */
const REMOVE_BLOCKING_DIRS = 32

/** Removes `dir` if it holds only directories that do, within `budget`; false, with the rest left, otherwise. */
function removeEmptyDirs (dir: string, budget: { left: number }): boolean {
  if (--budget.left < 0) return false
  let entries: Dirent[]
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch {
    return false
  }
  for (const e of entries) if (!e.isDirectory() || !removeEmptyDirs(path.join(dir, e.name), budget)) return false
  try {
    rmdirSync(dir)
    return true
  } catch {
    return false
  }
}

/**
 * Which cores each running guest is pinned to: a new reservation of N cores gets the N used
 * by the fewest guests now (lowest first), so `nproc` in the guest answers N and guests of
 * one machine spread over its cores.
 */
export class CoreAllocator {
  private readonly use: Map<number, number>

  constructor (cores: number[] = allowedCores()) {
    this.use = new Map(cores.map((c) => [c, 0]))
  }

  take (n: number): number[] {
    if (n <= 0 || n >= this.use.size) {
      // none asked (--cpus 0), or the whole machine: not pinned
      return []
    }
    const picked = [...this.use.entries()].sort((a, b) => a[1] - b[1] || a[0] - b[0]).slice(0, n).map(([c]) => c)
    for (const c of picked) this.use.set(c, (this.use.get(c) ?? 0) + 1)
    return picked.sort((a, b) => a - b)
  }

  give (cores: number[]): void {
    for (const c of cores) this.use.set(c, Math.max(0, (this.use.get(c) ?? 1) - 1))
  }
}

/** The CPUs this process may run on (its affinity), from /proc; else 0..n-1. */
export function allowedCores (): number[] {
  try {
    const status = readFileSync('/proc/self/status', 'utf8')
    const line = /^Cpus_allowed_list:\s*(.+)$/m.exec(status)?.[1]
    if (line !== undefined) {
      const cores: number[] = []
      for (const part of line.trim().split(',')) {
        const [a, b] = part.split('-').map(Number)
        if (a === undefined || !Number.isInteger(a)) continue
        for (let c = a; c <= (b ?? a); c++) cores.push(c)
      }
      if (cores.length > 0) return cores
    }
  } catch {}
  return [...Array(os.availableParallelism()).keys()]
}

/**
 * The device nodes of `gpus`, as `devDir` has them (the machine's /dev; tests give a directory
 * of stand-ins): each NVIDIA GPU's `nvidiaN` with the control nodes, AMD's compute node and
 * render nodes. Nodes that do not exist are left out.
 */
export async function gpuDevices (gpus: LentGpu[], devDir = '/dev'): Promise<SandboxMount[]> {
  const want: string[] = []
  if (gpus.some((g) => gpuVendor(g.vendor) === 'nvidia')) {
    for (const g of gpus) if (gpuVendor(g.vendor) === 'nvidia') want.push(`nvidia${g.index}`)
    want.push(...NVIDIA_CONTROL_NODES, 'nvidia-caps')
  }
  if (gpus.some((g) => gpuVendor(g.vendor) === 'amd')) {
    // ROCm numbers GPUs otherwise than /dev/dri: the render nodes go whole, and
    // ROCR_VISIBLE_DEVICES (environment.ts) picks the task's.
    want.push('kfd', 'dri')
  }
  const out: SandboxMount[] = []
  for (const name of want) {
    const host = path.join(devDir, name)
    if (await fs.lstat(host).then(() => true, () => false)) out.push({ host, guest: path.join('/dev', name) })
  }
  return out
}

/** The environment a sandboxed guest starts from: the agent's PATH and locale, nothing else of it. */
export function guestBaseEnv (agentEnv: Readonly<Record<string, string>>, user: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(agentEnv)) if (GUEST_ENV_KEEP.test(k)) env[k] = v
  Object.assign(env, { HOME: '/tmp', USER: user, LOGNAME: user, SHELL: '/bin/sh' })
  return env
}

export interface GuestSandboxInput {
  iso: Extract<Isolation, { kind: 'sandbox' }>
  dirs: GuestDirs
  workspace: SandboxMount
  /** Where the command starts, in the guest. */
  cwd: string
  gpus: LentGpu[]
  cores: number[]
  devDir?: string
}

export async function guestSandbox (inp: GuestSandboxInput): Promise<Sandbox> {
  const { base } = inp.iso
  return {
    ...base,
    workspace: inp.workspace,
    cwd: inp.cwd,
    taskHome: { host: inp.dirs.home, guest: GUEST_HOME },
    commands: { host: base.commands, guest: path.join(GUEST_HOME, 'bin') },
    tmp: inp.dirs.tmp,
    devices: await gpuDevices(inp.gpus, inp.devDir),
    cores: inp.cores
  }
}

/** Starts the socket of a guest task in `dir` (agent.ts: the handlers scoped to the task). */
export type GuestSocketFactory = (dir: string, scope: GuestScope, owner?: { uid: number, gid: number }) => Promise<{ close: () => Promise<void> }>

export interface GuestRunInput {
  task: string
  /** The directory the command works in here (copy, scratch, or a parent's copy), and the start directory in it. */
  root: string
  cwd: string
  /** The workspace's path on its user's machine; undefined for a run without a workspace. */
  mount?: string
  gpus: LentGpu[]
  cpus: number
  /** The agent's own environment, whose PATH and locale a sandboxed guest keeps. */
  agentEnv: Readonly<Record<string, string>>
  /** `root` is a workspace copy (not a scratch directory): what its sync for this run did. */
  copy?: CopySync
}

export interface GuestRun {
  /** The command's environment before the user's variables. */
  env: Record<string, string>
  sandbox?: Sandbox
  close: () => Promise<void>
}

/** Paths a workspace cannot be mounted at in the sandbox: the guest then works at GUEST_SCRATCH's sibling. */
const UNMOUNTABLE = ['/proc', '/dev', '/sys', '/run', '/var/tmp']

/**
 * Where the sandbox shows a workspace whose user has it at `user`: the same path, unless that
 * path is one the sandbox makes itself, or lies in a read-only system directory that lacks it
 * (bwrap could not make the mount point).
 */
export function guestMount (user: string, base: { system: string[], readOnly: string[] }, exists: (p: string) => boolean): string {
  const p = path.resolve(user)
  if (p === '/' || p === '/tmp' || within(p, GUEST_HOME) || UNMOUNTABLE.some((d) => within(p, d))) return GUEST_WORKSPACE_FALLBACK
  if ([...base.system, ...base.readOnly].some((d) => within(p, d)) && !exists(p)) return GUEST_WORKSPACE_FALLBACK
  return p
}
export const GUEST_WORKSPACE_FALLBACK = '/tmp/workspace'

export class GuestRuns {
  constructor (private readonly o: {
    home: string
    /** Where the guests' own homes go (runtime-dir.ts). */
    runtime: string
    iso: Isolation
    cores: CoreAllocator
    socket: GuestSocketFactory
    /** The machine's /dev, where GPU nodes are (tests give stand-ins). */
    devDir?: string
    agentUser: string
  }) {
    this.tmps = guestTmpPool(o.home)
  }

  /** The guests' /tmp directories (dir-pool.ts). */
  private readonly tmps: DirPool

  async open (inp: GuestRunInput): Promise<GuestRun> {
    const { iso } = this.o
    if (iso.kind === 'unavailable') throw new VgridError('ERR_NO_CAPACITY', `this member lends nothing: ${iso.why}`, iso.hint)
    const owner = iso.kind === 'sandbox' ? iso.base.user : undefined
    const dirs = makeGuestDirs(this.o.runtime, inp.task, this.tmps, owner, inp.mount === undefined)
    const cores: number[] = []
    let server: { close: () => Promise<void> } | undefined
    const close = async (): Promise<void> => {
      this.o.cores.give(cores)
      await server?.close().catch(() => {})
      await removeGuestDirs(dirs, iso.kind === 'sandbox', this.tmps)
    }
    try {
      const rel = path.relative(inp.root, inp.cwd)
      if (iso.kind === 'none') {
        if (inp.copy !== undefined) forgetHandOver(inp.root)
        server = await this.o.socket(dirs.home, { task: inp.task, ...(inp.mount !== undefined ? { workspace: { seen: inp.root, host: inp.root, user: inp.mount } } : {}) })
        const env: Record<string, string> = {
          ...inp.agentEnv,
          VGRID_TASK_ID: inp.task,
          VGRID_HOME: dirs.home,
          VGRID_WORKSPACE: inp.root,
          PWD: inp.cwd,
          PATH: [path.join(this.o.home, 'bin'), inp.agentEnv.PATH].filter(Boolean).join(':')
        }
        return { env, close }
      }
      // The agent wrote the copy; the guest user must be able to change it.
      if (inp.copy !== undefined) await handOver(inp.root, owner, inp.copy)
      else if (owner !== undefined) await chownTree(inp.root, owner)
      const seen = inp.mount !== undefined ? guestMount(inp.mount, iso.base, (p) => existsSync(p)) : GUEST_SCRATCH
      const guestCwd = path.join(seen, rel)
      server = await this.o.socket(dirs.home, { task: inp.task, ...(inp.mount !== undefined ? { workspace: { seen, host: inp.root, user: inp.mount } } : {}) }, owner)
      cores.push(...this.o.cores.take(inp.cpus))
      const sandbox = await guestSandbox({ iso, dirs, workspace: { host: inp.root, guest: seen }, cwd: guestCwd, gpus: inp.gpus, cores, ...(this.o.devDir !== undefined ? { devDir: this.o.devDir } : {}) })
      const env = guestBaseEnv(inp.agentEnv, iso.user?.name ?? this.o.agentUser)
      Object.assign(env, {
        VGRID_TASK_ID: inp.task,
        VGRID_HOME: GUEST_HOME,
        VGRID_WORKSPACE: seen,
        PWD: guestCwd,
        PATH: [path.join(GUEST_HOME, 'bin'), env.PATH].filter(Boolean).join(':')
      })
      return { env, sandbox, close }
    } catch (err) {
      await close()
      throw err
    }
  }
}
