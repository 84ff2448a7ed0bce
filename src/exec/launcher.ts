/**
 * Starts commands from a small helper process instead of the agent itself.
 *
 * Node starts a child with fork(): the kernel copies the page tables of the whole agent (a
 * hundred MB and more resident, threads and all), and the agent's one thread waits until the
 * child has exec'd, so the copy is torn down again too. In a fan-out of `true` on this 2-core
 * VM that was 43% of one agent's main thread (ChildProcess.spawn in the profile, ~3.8 ms a
 * start). The helper is a Perl loop of a few MB: forking it costs a fraction of a
 * millisecond, and the agent only writes a request and reads a line back.
 *
 * It also makes FIFOs (exec/fifos.ts), many per request: a `mkfifo` process each time cost
 * the agent a fork of itself too.
 *
 * The helper reads requests (a length line, then NUL-separated fields) and, for each, forks a
 * child that leads a session of its own (as Node's `detached`), opens its stdio from the
 * FIFOs' names (the agent holds their other ends, so no open waits), changes directory, takes
 * the environment given and execs the file with the argv given (argv[0] included). It answers
 * `S id pid` once the exec has happened (a close-on-exec pipe says so), `E id errno` when it
 * could not, and `X pid status` (the raw wait status) when a child it started has ended. A
 * request of FIFOs (`F`, id, names…) is answered `F id 0`, or `F id errno` at the first it
 * could not make.
 *
 * Perl is Essential on Debian and present nearly everywhere else; where it is missing, or the
 * helper died, commands are started by Node as before (spawn-pipes.ts). The helper leaves
 * when the agent does (its stdin ends); sandboxed guests die with it (`--die-with-parent`),
 * and the agent's watchdog kills guests of an agent that froze (watchdog.ts).
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import os from 'node:os'
import type { Socket } from 'node:net'
import type { Writable } from 'node:stream'
import { createLogger } from '../common/log.js'
import { signalName, type RawStatus, type SpawnOptions } from './command.js'
import { startLine } from './niceness.js'
import { findTool } from './find-tool.js'

const log = createLogger('launcher')

/**
 * The helper. Fields of a request: id, cwd, stdin, stdout, stderr, niceness, cores (comma
 * separated, or empty: not pinned), file, argc, argv…, env (NAME=value)…. Its argument: the
 * number of sched_setaffinity on this machine (0: unknown, it pins nothing).
 */
const HELPER = String.raw`
use strict; use warnings; use POSIX (); use Fcntl; use Errno qw(EINTR);
my $affinity = $ARGV[0];
$SIG{PIPE} = 'DEFAULT';
pipe(my $wr, my $ww) or die "pipe: $!";
fcntl($ww, F_SETFL, O_NONBLOCK);
$SIG{CHLD} = sub { syswrite($ww, 'x') };
binmode STDIN; binmode STDOUT;
my $in = '';
my $rin = '';
vec($rin, fileno(STDIN), 1) = 1;
vec($rin, fileno($wr), 1) = 1;
sub say_ {
  my $s = $_[0];
  while (length $s) {
    my $n = syswrite(STDOUT, $s);
    if (!defined $n) { next if $! == EINTR; exit 0 }
    substr($s, 0, $n) = '';
  }
}
sub reap { while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) { say_("X $pid $?\n") } }
sub launch {
  my @f = split /\0/, $_[0], -1;
  my ($id, $cwd, $i, $o, $e, $nice, $cpus, $file, $argc) = splice(@f, 0, 9);
  my @argv = splice(@f, 0, $argc);
  my %env = map { /^([^=]*)=(.*)\z/s ? ($1, $2) : () } @f;
  my ($er, $ew);
  if (!pipe($er, $ew)) { say_("E $id " . ($! + 0) . "\n"); return }
  my $pid = fork();
  if (!defined $pid) { my $n = $! + 0; close $er; close $ew; say_("E $id $n\n"); return }
  if ($pid == 0) {
    close $er;
    $SIG{CHLD} = 'DEFAULT';
    POSIX::setsid();
    my $ok = eval {
      # Never waits for the other end (its holder may be gone): opened non-blocking, then made
      # blocking, as a command expects its stdio. A FIFO with no reader fails (ENXIO) instead.
      my @fd;
      for ([$i, O_RDONLY], [$o, O_WRONLY], [$e, O_WRONLY]) {
        sysopen(my $fh, $_->[0], $_->[1] | O_NONBLOCK) or die;
        my $fl = fcntl($fh, F_GETFL, 0) or die;
        fcntl($fh, F_SETFL, $fl & ~O_NONBLOCK) or die;
        push @fd, $fh;
      }
      for my $n (0 .. 2) { POSIX::dup2(fileno($fd[$n]), $n) // die }
      chdir($cwd) or die;
      # as nice(1) and taskset(1) would, without a program of their own to exec
      if ($nice ne '0') { setpriority(0, 0, $nice) or die }
      if ($cpus ne '') {
        my $mask = '';
        vec($mask, $_, 1) = 1 for split /,/, $cpus;
        $mask .= "\0" x (-length($mask) % 8);
        syscall($affinity, 0, length($mask), $mask) == 0 or die;
      }
      1
    };
    if ($ok) { %ENV = %env; exec { $file } @argv }
    syswrite($ew, ($! + 0) . '');
    POSIX::_exit(127);
  }
  close $ew;
  # a SIGCHLD of another command interrupts the wait for this one's exec: wait again
  my ($n, $err);
  do { $n = sysread($er, $err, 64) } while (!defined $n && $! == EINTR);
  close $er;
  if ($n) { waitpid($pid, 0); say_("E $id $err\n") } else { say_("S $id $pid\n") }
}
sub fifos {
  my ($id, @names) = split /\0/, $_[0], -1;
  for my $n (@names) {
    # as mkfifo -m 0666: mkfifo(3) takes the umask off, chmod puts it back
    unless (POSIX::mkfifo($n, 0666) && chmod(0666, $n)) { say_("F $id " . ($! + 0) . "\n"); return }
  }
  say_("F $id 0\n");
}
for (;;) {
  reap();
  my $rout = $rin;
  my $n = select($rout, undef, undef, undef);
  next if $n < 0;
  if (vec($rout, fileno($wr), 1)) { sysread($wr, my $junk, 4096) }
  next unless vec($rout, fileno(STDIN), 1);
  my $r = sysread(STDIN, $in, 1 << 20, length $in);
  next if !defined $r && $! == EINTR;
  exit 0 unless $r;
  while ($in =~ /\A(\d+)\n/) {
    my ($len, $head) = ($1, length($1) + 1);
    last if length($in) < $head + $len;
    my $req = substr($in, $head, $len);
    substr($in, 0, $head + $len) = '';
    if (substr($req, 0, 2) eq "F\0") { fifos(substr($req, 2)) } else { launch($req) }
  }
}
`

/** What the helper needs to start one command; the stdio are FIFO names whose other ends the caller holds open. */
export interface LaunchRequest {
  file: string
  argv: string[]
  cwd: string
  env: Record<string, string>
  stdio: [string, string, string]
  /** The niceness it starts at (0: the agent's own). */
  nice?: number
  /** The cores it is pinned to (none: not pinned); only where `canPin`. */
  cores?: number[]
}

/**
 * sched_setaffinity's number, by architecture: Perl has no call of its own for it. Elsewhere
 * the caller pins through taskset, as before.
 */
const AFFINITY_SYSCALL: Partial<Record<NodeJS.Architecture, number>> = { x64: 203, arm64: 122 }

/** A command the helper started. */
export interface Launched {
  pid: number
  /** Resolves with how it ended, or with SIGKILL's status when the helper died first (it took the command's sandbox with it). */
  status: Promise<RawStatus>
}

interface Waiting<T = Launched> { resolve: (l: T) => void, reject: (err: Error) => void }

export class Launcher {
  private readonly child: ChildProcessByStdio<Writable, Socket, null>
  private readonly starting = new Map<number, Waiting>()
  private readonly running = new Map<number, (s: RawStatus) => void>()
  private readonly making = new Map<number, Waiting<void>>()
  private nextId = 1
  private buffered = ''
  private dead = false

  /** Whether it pins a command to its cores itself (LaunchRequest.cores). */
  readonly canPin: boolean

  constructor (perl: string) {
    const affinity = os.platform() === 'linux' ? AFFINITY_SYSCALL[process.arch] ?? 0 : 0
    this.canPin = affinity !== 0
    this.child = spawn(perl, ['-e', HELPER, String(affinity)], { stdio: ['pipe', 'pipe', 'inherit'], detached: true }) as unknown as ChildProcessByStdio<Writable, Socket, null>
    this.child.stdin.on('error', () => { this.die('its input closed') })
    this.child.on('error', (err) => { this.die(err.message) })
    this.child.on('exit', (code, signal) => { this.die(`it exited (${signal ?? code})`) })
    this.child.stdout.setEncoding('latin1')
    this.child.stdout.on('data', (d: string) => { this.read(d) })
    // Writes in flight hold the event loop by themselves; an idle pipe must not.
    ;(this.child.stdin as unknown as { unref?: () => void }).unref?.()
    this.idle()
  }

  /** The helper's own pid. */
  get pid (): number | undefined {
    return this.child.pid
  }

  /** Whether it can take requests (it has not died). */
  get alive (): boolean {
    return !this.dead
  }

  /**
   * Starts `opts` on the FIFOs named in `stdio`: at its niceness and on its cores, set in the
   * child where the helper can (`canPin`), else through taskset in front (niceness.ts).
   */
  async start (opts: Pick<SpawnOptions, 'file' | 'argv' | 'cwd' | 'env' | 'nice' | 'pin'>, stdio: [string, string, string]): Promise<Launched> {
    const line = startLine(opts, { nice: true, pin: this.canPin })
    const cores = this.canPin ? opts.pin?.cores ?? [] : []
    return await this.launch({ file: line.file, argv: line.argv, cwd: opts.cwd, env: opts.env, stdio, nice: opts.nice ?? 0, ...(cores.length > 0 ? { cores } : {}) })
  }

  /** Starts a command; rejects as spawn() would (ENOENT, EACCES…) when it could not be exec'd. */
  async launch (r: LaunchRequest): Promise<Launched> {
    if (this.dead) throw new Error('the launcher is gone')
    const id = this.nextId++
    const env = Object.entries(r.env).map(([k, v]) => `${k}=${v}`)
    const cores = r.cores ?? []
    if (cores.length > 0 && !this.canPin) throw new Error('this launcher cannot pin commands to cores here')
    if (![r.nice ?? 0, ...cores].every((n) => Number.isSafeInteger(n) && n >= 0)) throw Object.assign(new Error('a niceness or core is not a whole number'), { code: 'EINVAL' })
    const fields = [String(id), r.cwd, ...r.stdio, String(r.nice ?? 0), cores.join(','), r.file, String(r.argv.length), ...r.argv, ...env]
    if (fields.some((f) => f.includes('\0'))) throw Object.assign(new Error('an argument or variable holds a NUL byte'), { code: 'EINVAL' })
    const body = Buffer.from(fields.join('\0'))
    this.busy()
    const started = new Promise<Launched>((resolve, reject) => { this.starting.set(id, { resolve, reject }) })
    this.child.stdin.write(Buffer.concat([Buffer.from(`${body.byteLength}\n`), body]))
    return await started.catch((err: unknown) => { this.idle(); throw err })
  }

  /** Makes a FIFO of mode 0666 at each of `names` (absolute, none there yet); rejects at the first it could not make. */
  async makeFifos (names: string[]): Promise<void> {
    if (this.dead) throw new Error('the launcher is gone')
    if (names.some((n) => n.includes('\0'))) throw Object.assign(new Error('a name holds a NUL byte'), { code: 'EINVAL' })
    const id = this.nextId++
    const body = Buffer.from(['F', String(id), ...names].join('\0'))
    this.busy()
    const made = new Promise<void>((resolve, reject) => { this.making.set(id, { resolve, reject }) })
    this.child.stdin.write(Buffer.concat([Buffer.from(`${body.byteLength}\n`), body]))
    await made.finally(() => { this.idle() })
  }

  private read (data: string): void {
    this.buffered += data
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl)
      this.buffered = this.buffered.slice(nl + 1)
      const [kind, a, b] = line.split(' ')
      const x = Number(a)
      const y = Number(b)
      if (kind === 'S') {
        // Its end may be in this very read: its status is waited for from now.
        const status = new Promise<RawStatus>((resolve) => { this.running.set(y, resolve) })
        this.starting.get(x)?.resolve({ pid: y, status })
        this.starting.delete(x)
      } else if (kind === 'E') {
        const code = errnoName(y)
        this.starting.get(x)?.reject(Object.assign(new Error(`spawn: ${code}`), { code, errno: -y }))
        this.starting.delete(x)
      } else if (kind === 'F') {
        const w = this.making.get(x)
        this.making.delete(x)
        if (y === 0) w?.resolve()
        else { const code = errnoName(y); w?.reject(Object.assign(new Error(`mkfifo: ${code}`), { code, errno: -y })) }
      } else if (kind === 'X') {
        const done = this.running.get(x)
        this.running.delete(x)
        // (y & 0x7f): the signal that killed it; else the exit code in the next byte
        done?.((y & 0x7f) !== 0 ? { code: null, signal: signalName(y & 0x7f) } : { code: (y >> 8) & 0xff, signal: null })
        this.idle()
      } else {
        log.warn(`the launcher said something unexpected: ${line.slice(0, 200)}`)
      }
    }
  }

  /** Holds the agent's event loop open while a command it started is out: its end must be heard. */
  private busy (): void {
    this.child.ref()
    this.child.stdout.ref()
  }

  private idle (): void {
    if (this.starting.size === 0 && this.running.size === 0 && this.making.size === 0) {
      this.child.stdout.unref()
      this.child.unref()
    }
  }

  private die (why: string): void {
    if (this.dead) return
    this.dead = true
    log.warn(`the command launcher stopped (${why}): commands start from the agent itself`)
    for (const w of this.starting.values()) w.reject(Object.assign(new Error('the launcher is gone'), { code: 'ECHILD' }))
    this.starting.clear()
    for (const w of this.making.values()) w.reject(Object.assign(new Error('the launcher is gone'), { code: 'ECHILD' }))
    this.making.clear()
    // Its sandboxes went with it; a command left unsandboxed is killed so none outlives what tracked it.
    for (const [pid, done] of this.running) {
      try { process.kill(-pid, 'SIGKILL') } catch {}
      done({ code: null, signal: 'SIGKILL' })
    }
    this.running.clear()
    this.child.stdout.unref()
  }
}

function errnoName (n: number): string {
  for (const [name, num] of Object.entries(os.constants.errno)) if (num === n) return name
  return `E${n}`
}

let shared: Launcher | undefined
let perl: string | undefined | null = null

/**
 * This process's launcher, started at first use; undefined where there is no Perl, where it
 * died, or when VGRID_LAUNCHER=node asks for Node's own spawn.
 */
export function defaultLauncher (): Launcher | undefined {
  if (process.env.VGRID_LAUNCHER === 'node') return undefined
  if (shared !== undefined) return shared.alive ? shared : undefined
  if (perl === null) perl = findTool('perl', (process.env.PATH ?? '/usr/bin:/bin').split(':'))
  if (perl === undefined) return undefined
  shared = new Launcher(perl)
  return shared
}
