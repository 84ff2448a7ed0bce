/**
 * How this agent contains guests (DESIGN §5): found once at start. With bubblewrap installed
 * and working, every guest runs in a sandbox (exec/sandbox.ts); with `--isolation none` the
 * owner chose to run them as themselves; without a working bwrap the agent lends nothing and
 * says how to fix it.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFile } from 'node:child_process'
import { PACKAGE_ROOT } from '../common/version.js'
import { VgridError } from '../common/errors.js'
import { SYSTEM_DIRS, within, type Sandbox } from '../exec/sandbox.js'
import { findTool } from '../exec/find-tool.js'

export type IsolationMode = 'sandbox' | 'none'

export interface IsolationConfig {
  mode: IsolationMode
  /** Whether guests keep the network (`--guest-net none`: no). */
  net: boolean
  /** Under root, whom guests run as (`--guest-user`, default nobody). */
  guestUser?: string
  /** Directories guests see at the same path (`--guest-share DIR[:rw]`): datasets, a shared scratch. */
  shares?: Array<{ path: string, rw: boolean }>
}

/** What every guest's sandbox shares; the per-task mounts are added by guest-run.ts. */
export type SandboxBase = Omit<Sandbox, 'workspace' | 'cwd' | 'taskHome' | 'tmp' | 'devices' | 'cores' | 'commands'> & { commands: string }

export type Isolation =
  | { kind: 'sandbox', base: SandboxBase, user?: { uid: number, gid: number, name: string } }
  | { kind: 'none' }
  /** Guests cannot be contained here: the agent lends nothing. */
  | { kind: 'unavailable', why: string, hint: string }

export const DEFAULT_GUEST_USER = 'nobody'
const BWRAP_DIRS = ['/usr/bin', '/usr/local/bin', '/bin']
const PROBE_TIMEOUT_MS = 10_000
export const BWRAP_INSTALL_HINT = 'install bubblewrap (Debian, Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf install bubblewrap`), ' +
  'or start the agent with --isolation none to run guests unconfined as this user'

/** A user of /etc/passwd by name or number. */
export function lookupUser (name: string, passwd = '/etc/passwd'): { uid: number, gid: number, name: string } | undefined {
  let text: string
  try {
    text = fs.readFileSync(passwd, 'utf8')
  } catch {
    return undefined
  }
  for (const line of text.split('\n')) {
    const [user, , uid, gid] = line.split(':')
    if (user === undefined || uid === undefined || gid === undefined) continue
    if (user === name || uid === name) return { uid: Number(uid), gid: Number(gid), name: user }
  }
  return undefined
}

/** The top-level entries of `/` that are symlinks into the bound system (/bin -> usr/bin). */
function systemLinks (): Array<{ path: string, target: string }> {
  const links: Array<{ path: string, target: string }> = []
  for (const name of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    const p = `/${name}`
    try {
      if (fs.lstatSync(p).isSymbolicLink()) links.push({ path: p, target: fs.readlinkSync(p) })
    } catch {}
  }
  return links
}

/** Real top-level directories such as /bin on systems that have not merged /usr. */
function systemDirs (): string[] {
  const dirs: string[] = []
  for (const d of [...SYSTEM_DIRS, '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    try {
      const st = fs.lstatSync(d)
      if (st.isDirectory()) dirs.push(d)
    } catch {}
  }
  return dirs
}

/** Runs bwrap once, as a guest would be run, to learn whether it works here. */
async function probe (bwrap: string, user: { uid: number, gid: number } | undefined, setpriv: string | undefined): Promise<string | undefined> {
  const args = ['--unshare-pid', '--die-with-parent', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev']
  if (user !== undefined) args.push('--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID', '--', setpriv ?? 'setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', 'true')
  else args.push('--', 'true')
  return await new Promise((resolve) => {
    execFile(bwrap, args, { timeout: PROBE_TIMEOUT_MS }, (err, _out, stderr) => {
      resolve(err === null ? undefined : (stderr.trim() || err.message).split('\n')[0])
    })
  })
}

export async function detectIsolation (cfg: IsolationConfig, home: string): Promise<Isolation> {
  const root = process.getuid?.() === 0
  // Checked whoever runs the agent: a config that names root must not work only by chance.
  const named = cfg.guestUser !== undefined ? lookupUser(cfg.guestUser) : undefined
  if (named?.uid === 0) throw new VgridError('ERR_BAD_ARGUMENT', `--guest-user ${cfg.guestUser!} is root: guests never run as root`, 'name an unprivileged user, e.g. nobody')
  if (cfg.mode === 'none') return { kind: 'none' }
  let user: { uid: number, gid: number, name: string } | undefined
  if (root) {
    const name = cfg.guestUser ?? DEFAULT_GUEST_USER
    user = named ?? lookupUser(name)
    if (user === undefined) throw new VgridError('ERR_BAD_ARGUMENT', `--guest-user ${name}: no such user on this machine`, 'name an existing unprivileged user, e.g. nobody')
  }
  // VGRID_BWRAP: a bwrap of the owner's choice (or, in tests, one that is not there).
  const chosen = process.env.VGRID_BWRAP
  const bwrap = chosen !== undefined && chosen !== ''
    ? findTool(path.basename(chosen), [path.dirname(chosen)])
    : findTool('bwrap', [...BWRAP_DIRS, ...(process.env.PATH ?? '').split(':').filter((d) => path.isAbsolute(d))])
  if (bwrap === undefined) return { kind: 'unavailable', why: `bubblewrap (bwrap) is not installed${chosen !== undefined && chosen !== '' ? ` at VGRID_BWRAP=${chosen}` : ''}`, hint: BWRAP_INSTALL_HINT }
  const env = findTool('env', ['/usr/bin', '/bin'])
  const setpriv = findTool('setpriv', ['/usr/bin', '/bin', '/usr/sbin', '/sbin'])
  if (env === undefined) return { kind: 'unavailable', why: 'env(1) was not found in /usr/bin or /bin', hint: 'install coreutils' }
  if (root && setpriv === undefined) return { kind: 'unavailable', why: 'setpriv(1), which drops guests to --guest-user, was not found', hint: 'install util-linux' }
  const failed = await probe(bwrap, user, setpriv)
  if (failed !== undefined) {
    return {
      kind: 'unavailable',
      why: `bubblewrap cannot make a sandbox here: ${failed}`,
      hint: 'user namespaces may be off (sysctl kernel.unprivileged_userns_clone=1, or an AppArmor rule for bwrap); or start the agent with --isolation none'
    }
  }
  const system = systemDirs()
  const visible = (p: string): boolean => system.some((d) => within(p, d))
  // nested vrun inside a guest runs node and the vgrid package at the paths the links name
  const pkg = PACKAGE_ROOT
  const nodePrefix = path.dirname(path.dirname(fs.realpathSync(process.execPath)))
  // never a whole private directory: a package found at / or /tmp would undo the sandbox
  const readOnly = [...new Set([pkg, nodePrefix].filter((p) => !visible(p) && !['/', '/tmp', '/home', '/root', '/run'].includes(p)))]
  const tools: SandboxBase['tools'] = { env }
  const taskset = findTool('taskset', ['/usr/bin', '/bin'])
  if (taskset !== undefined) tools.taskset = taskset
  if (setpriv !== undefined) tools.setpriv = setpriv
  const perl = findTool('perl', ['/usr/bin', '/bin'])
  if (perl !== undefined) tools.perl = perl
  const base: SandboxBase = {
    bwrap,
    system,
    links: systemLinks(),
    readOnly,
    shares: cfg.shares ?? [],
    hidden: [...new Set([home, os.homedir(), '/home', '/root'])],
    net: cfg.net,
    tools,
    commands: path.join(home, 'bin')
  }
  return user !== undefined ? { kind: 'sandbox', base: { ...base, user: { uid: user.uid, gid: user.gid } }, user } : { kind: 'sandbox', base }
}

/**
 * Whether a guest's memory is held to what it reserved. It would be through a cgroup v2
 * sub-group per guest; that is not written yet, and machines with cgroup v1 only (as the
 * ones vgrid is tested on) could not have it.
 */
export function memoryEnforcement (controllers = '/sys/fs/cgroup/cgroup.controllers'): string {
  let text: string
  try {
    text = fs.readFileSync(controllers, 'utf8')
  } catch {
    return 'not enforced: this machine has no cgroup v2 hierarchy at /sys/fs/cgroup (cgroup v1 only); --mem is what placement counts, not a limit'
  }
  if (!text.split(/\s+/).includes('memory')) return 'not enforced: the cgroup v2 memory controller is not enabled here; --mem is what placement counts, not a limit'
  return 'not enforced: vgrid does not make a cgroup per guest yet; --mem is what placement counts, not a limit'
}

/** How guests run here, after the word "guests": for the banner and `vgrid status`. */
export function describeIsolation (iso: Isolation): string {
  switch (iso.kind) {
    case 'sandbox': return `run in a bubblewrap sandbox${iso.user !== undefined ? ` as ${iso.user.name}` : ''}${iso.base.net ? '' : ', without network'}`
    case 'none': return 'run unconfined, as this agent\'s user (--isolation none)'
    case 'unavailable': return `lending nothing: ${iso.why}`
  }
}
