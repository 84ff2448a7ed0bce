/**
 * The sandbox a guest command runs in (DESIGN §5), made with bubblewrap: how to start `FILE
 * ARGS…` inside it. Pure: it builds an argv, it starts nothing.
 *
 * What the guest sees:
 * - its own mount, PID and IPC namespaces (and network, with `net: false`);
 * - the machine's system directories read-only (/usr, /etc, /opt, /sys, …); no /home, /root,
 *   /run, /var or /mnt, and the agent's `$VGRID_HOME` covered where it would show;
 * - its workspace copy read-write at the path the submitter sees (`workspace.guest`), a
 *   private /tmp (a directory of the task on disk, not RAM), its task home (`taskHome`:
 *   the socket for nested vrun and the commands) and the directories it needs read-only
 *   (node and the vgrid package, where they live outside the system directories);
 * - a minimal /dev, plus only the device nodes of the GPUs it was given.
 *
 * The process tree, from the agent down (pinned to `cores` and niced by whatever starts it,
 * exec/niceness.ts):
 *   bwrap … -- [setpriv …] FILE ARGS…
 * bwrap's monitor must not die of the signals that are meant for the command: it would take
 * the namespace down at once, with no grace for the command's own handler (Ctrl-C in a
 * Python script). The agent's own signals spare it (exec/process-group.ts); PID 1 of the
 * namespace ignores what it has no handler for. Under a terminal the kernel signals the
 * whole foreground group, so there the tree is
 *   env --ignore-signal=… bwrap … -- [setpriv …] env --default-signal=… perl … FILE ARGS…
 * bwrap starting with those signals ignored (exec keeps that), the command getting them back
 * and leading a group of its own (FOREGROUND) before it starts.
 * When the command ends, PID 1 ends and the kernel kills whatever the command left behind
 * (`setsid`, `nohup`, double forks); `--die-with-parent` does the same when the agent dies.
 * Under root, bwrap keeps only CAP_SETUID and CAP_SETGID for `setpriv`, which drops to the
 * guest user with no capability left.
 */
import path from 'node:path'

export interface SandboxMount {
  /** Where it is on this machine. */
  host: string
  /** Where the guest sees it. */
  guest: string
}

export interface Sandbox {
  /** Absolute path of `bwrap`. */
  bwrap: string
  /** The workspace copy (or a scratch directory), read-write. */
  workspace: SandboxMount
  /** Where the command starts, as the guest sees it (the workspace or a directory of it). */
  cwd: string
  /** The task's own home (its socket and commands), read-write. */
  taskHome: SandboxMount
  /** The vgrid commands (vrun, vbatch, vgrid), read-only, inside the task home. */
  commands: SandboxMount
  /** The task's private /tmp, read-write. */
  tmp: string
  /** System directories bound read-only at the same path (those that exist: SYSTEM_DIRS). */
  system: string[]
  /** Top-level symlinks of the machine reproduced as they are (/bin -> usr/bin). */
  links: Array<{ path: string, target: string }>
  /** More directories the guest reads at the same path (node, the vgrid package). */
  readOnly: string[]
  /** Directories of this machine the owner shares with guests (`--guest-share DIR[:rw]`), at the same path. */
  shares: Array<{ path: string, rw: boolean }>
  /** What must not show even where it lies under a bound directory (the agent's home). */
  hidden: string[]
  /** Whether the guest keeps the machine's network. */
  net: boolean
  /** Under root: whom the command runs as. */
  user?: { uid: number, gid: number }
  /** Device nodes to expose: host path and the path in the guest's /dev. */
  devices: SandboxMount[]
  /** CPUs the command is pinned to; empty: not pinned. Its starter pins it (SpawnOptions.pin). */
  cores: number[]
  /** Where the helper programs are (env, taskset, setpriv, perl). */
  tools: { env: string, taskset?: string, setpriv?: string, perl?: string }
  /** The command runs under a terminal: it gets a process group of its own in the namespace (FOREGROUND). */
  tty?: boolean
}

/** Signals that reach a command from outside (Ctrl-C, cancel, hang-up) and must not end bwrap itself. */
export const FORWARDED_SIGNALS = ['INT', 'TERM', 'QUIT', 'HUP', 'USR1', 'USR2'] as const

/** Directories of the machine a guest may read, bound read-only when they exist. */
export const SYSTEM_DIRS = ['/usr', '/etc', '/opt', '/sys', '/nix', '/gnu', '/snap'] as const

/**
 * Whether `p` is `dir` or inside it, once both are resolved: a path from a guest or a peer
 * may hold `..` (`/ws/../../etc` is not inside `/ws`).
 */
export function within (p: string, dir: string): boolean {
  const a = path.resolve(p)
  const d = path.resolve(dir)
  return a === d || a.startsWith(d === '/' ? d : `${d}/`)
}

/**
 * Where a guest path is on this machine: undefined for what the guest has privately or
 * cannot see (its /tmp is the task's, /home is absent…). Used to find a command on the
 * guest's PATH without entering the sandbox.
 */
export function hostPath (sb: Sandbox, asked: string): string | undefined {
  const guest = path.resolve(asked)
  // Read-only directories and shares are bound over the private /tmp too (a test's share lives there).
  const same = [...sb.readOnly, ...sb.shares.map((s) => s.path)].map((d) => ({ host: d, guest: d }))
  const mounts = [sb.workspace, sb.taskHome, sb.commands, { host: sb.tmp, guest: '/tmp' }, ...same]
  // The deepest mount wins: the workspace may sit under /tmp.
  let best: SandboxMount | undefined
  for (const m of mounts) if (within(guest, m.guest) && (best === undefined || m.guest.length > best.guest.length)) best = m
  if (best !== undefined && !(same.includes(best) && sb.hidden.some((h) => within(guest, h)))) return path.join(best.host, path.relative(best.guest, guest))
  if (sb.hidden.some((h) => within(guest, h))) return undefined
  if ([...sb.system, ...sb.readOnly, ...sb.shares.map((s) => s.path)].some((d) => within(guest, d))) return guest
  const link = sb.links.find((l) => within(guest, l.path))
  if (link !== undefined) return hostPath(sb, path.join(path.dirname(link.path), link.target, path.relative(link.path, guest)))
  return undefined
}

/** Where a path of this machine shows in the guest (the inverse of hostPath for what it can see). */
export function guestPath (sb: Sandbox, host: string): string {
  for (const m of [sb.workspace, sb.taskHome, { host: sb.tmp, guest: '/tmp' }]) {
    if (within(host, m.host)) return path.join(m.guest, path.relative(m.host, host))
  }
  return host
}

/**
 * Under a terminal the command's process group is bwrap's, which lies outside its PID
 * namespace: a job-control shell that gives the terminal back to it at exit fails (dash
 * exits 2). So the command first leads a group of its own, in the foreground; perl is
 * Essential on Debian and everywhere else; where it is missing that quirk stays.
 */
const FOREGROUND = 'use POSIX; $SIG{TTOU} = "IGNORE"; setpgid(0, 0); tcsetpgrp(0, getpgrp()) if -t 0; $SIG{TTOU} = "DEFAULT"; ' +
  'exec { $ARGV[0] } @ARGV or do { print STDERR "vgrid: $ARGV[0]: $!\n"; exit 127 }'

/** bwrap refuses a command line of more than 9,000 arguments; past this many the command's travel in a file. */
export const SANDBOX_MAX_ARGS = 8_000
/** Where that file is, in the task home. */
export const ARGV_FILE = 'argv'

/**
 * A command line too long for bwrap's: the arguments go NUL-separated into ARGV_FILE of the
 * task home (`content`, for the caller to write), and bash reads them back and execs the
 * command with all of them.
 */
export function longArgv (sb: Sandbox, file: string, argv: string[]): { file: string, argv: string[], content: Buffer } | undefined {
  if (argv.length <= SANDBOX_MAX_ARGS) return undefined
  const content = Buffer.from([file, ...argv.slice(1)].map((a) => `${a}\0`).join(''))
  const inGuest = path.join(sb.taskHome.guest, ARGV_FILE)
  return { file: '/bin/bash', argv: ['bash', '-c', `mapfile -d '' -t a < ${inGuest} && exec -- "\${a[@]}"`], content }
}

/** The argv that starts `file` (a guest path) with `argv` inside the sandbox. */
export function sandboxed (sb: Sandbox, file: string, argv: string[]): { file: string, argv: string[] } {
  // Mount (always), PID and IPC namespaces. UTS and cgroup ones were measured at ~1.7 ms a
  // start here, for what a guest without capabilities could not change anyway.
  const b: string[] = ['--unshare-pid', '--unshare-ipc', '--die-with-parent']
  if (!sb.net) b.push('--unshare-net')
  b.push('--tmpfs', '/')
  const made = new Set<string>(['/'])
  // bwrap makes missing parents 0700, which a guest user other than root could not cross.
  const parents = (p: string): void => {
    const chain: string[] = []
    for (let d = path.dirname(p); !made.has(d); d = path.dirname(d)) chain.unshift(d)
    for (const d of chain) { b.push('--perms', '0755', '--dir', d); made.add(d) }
  }
  for (const d of sb.system) { parents(d); b.push('--ro-bind', d, d); made.add(d) }
  for (const l of sb.links) { b.push('--symlink', l.target, l.path); made.add(l.path) }
  b.push('--dev', '/dev', '--perms', '1777', '--tmpfs', '/dev/shm')
  for (const d of sb.devices) b.push('--dev-bind', d.host, d.guest)
  b.push('--proc', '/proc')
  b.push('--perms', '0755', '--tmpfs', '/run', '--perms', '0755', '--dir', '/var', '--perms', '1777', '--tmpfs', '/var/tmp')
  made.add('/dev').add('/proc').add('/run').add('/var')
  b.push('--bind', sb.tmp, '/tmp')
  made.add('/tmp')
  // After the private /tmp: vgrid itself may be installed under /tmp (a CI checkout).
  for (const d of sb.readOnly) { parents(d); b.push('--ro-bind', d, d); made.add(d) }
  // Over /tmp when the workspace lives there on the submitter (as tests' do).
  parents(sb.taskHome.guest)
  b.push('--bind', sb.taskHome.host, sb.taskHome.guest)
  parents(sb.commands.guest)
  b.push('--ro-bind', sb.commands.host, sb.commands.guest)
  for (const s of sb.shares) { parents(s.path); b.push(s.rw ? '--bind' : '--ro-bind', s.path, s.path) }
  // The agent's home stays out of sight wherever it lies under something bound.
  for (const h of sb.hidden) if ([...sb.system, ...sb.readOnly, ...sb.shares.map((s) => s.path)].some((d) => within(h, d) && h !== d)) b.push('--tmpfs', h)
  parents(sb.workspace.guest)
  b.push('--bind', sb.workspace.host, sb.workspace.guest)
  b.push('--chdir', sb.cwd)
  const inner: string[] = []
  if (sb.user !== undefined) {
    b.push('--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID')
    inner.push(sb.tools.setpriv ?? 'setpriv', `--reuid=${sb.user.uid}`, `--regid=${sb.user.gid}`, '--clear-groups',
      '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--')
  }
  const tty = sb.tty === true
  if (tty) {
    inner.push(sb.tools.env, `--default-signal=${FORWARDED_SIGNALS.join(',')}`, '--')
    if (sb.tools.perl !== undefined) inner.push(sb.tools.perl, '-e', FOREGROUND, '--')
  }
  // FILE is exec'd by path with argv[0] = FILE: the name the user typed is lost, as under nice(1).
  inner.push(file, ...argv.slice(1))
  const outer: string[] = tty ? [sb.tools.env, `--ignore-signal=${FORWARDED_SIGNALS.join(',')}`] : []
  outer.push(sb.bwrap, ...b, '--', ...inner)
  return { file: outer[0]!, argv: [path.basename(outer[0]!), ...outer.slice(1)] }
}
