/**
 * Real agent processes and real CLI binaries for end-to-end tests: each agent has its own
 * temporary VGRID_HOME and listens on 127.0.0.1 with a random port.
 */
import { spawn, spawnSync, type ChildProcess, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitFor } from './wait.js'
import { HOME_RUNTIME_DIR, runtimeCandidates, sweepRuntimeDirs } from '../../src/agent/runtime-dir.js'

/** The repository root, from the sources (vitest) or from dist/ (the benchmark). */
export const ROOT = ((): string => {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  while (!fs.existsSync(path.join(dir, 'bin', 'vgrid.js'))) {
    const up = path.dirname(dir)
    if (up === dir) throw new Error('cannot find the vgrid repository root')
    dir = up
  }
  return dir
})()
export const BIN = {
  vgrid: path.join(ROOT, 'bin/vgrid.js'),
  vrun: path.join(ROOT, 'bin/vrun.js'),
  vbatch: path.join(ROOT, 'bin/vbatch.js')
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  stdoutBytes: Buffer
}

export interface CliOptions {
  home: string
  input?: string | Buffer
  env?: Record<string, string>
  timeoutMs?: number
  cwd?: string
}

/** Runs a CLI binary to completion. A run past its deadline is killed and reported. */
export function runCli (bin: keyof typeof BIN, args: string[], opts: CliOptions): Promise<CliResult> {
  const child = spawnCli(bin, args, opts)
  return collect(child, opts.timeoutMs ?? 30_000, opts.input)
}

export function spawnCli (bin: keyof typeof BIN, args: string[], opts: Omit<CliOptions, 'input' | 'timeoutMs'>): ChildProcess {
  return spawn(process.execPath, [BIN[bin], ...args], {
    // Never the repository: vrun would sync it as the workspace.
    cwd: opts.cwd ?? tempDir('vgrid-cwd-'),
    env: { ...process.env, VGRID_HOME: opts.home, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe']
  })
}

/** Waits for the exit; `input` is written to stdin and closed, `null` leaves stdin open to the caller. */
export function collect (child: ChildProcess, timeoutMs: number, input?: string | Buffer | null): Promise<CliResult> {
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout?.on('data', (d: Buffer) => out.push(d))
  child.stderr?.on('data', (d: Buffer) => err.push(d))
  if (input !== null) child.stdin?.end(input)
  child.stdin?.on('error', () => {})
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${child.spawnargs.join(' ')} did not finish within ${timeoutMs} ms; stderr: ${Buffer.concat(err).toString()}`))
    }, timeoutMs)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const stdoutBytes = Buffer.concat(out)
      resolve({ code, signal, stdout: stdoutBytes.toString(), stderr: Buffer.concat(err).toString(), stdoutBytes })
    })
  })
}

export interface LiveCli {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** Resolves at the exit; stdin stays open to the caller (child.stdin). */
  done: Promise<CliResult>
}

/** A CLI started in the background, its output readable while it runs. */
export function startCli (bin: keyof typeof BIN, args: string[], opts: Omit<CliOptions, 'input'>): LiveCli {
  const child = spawnCli(bin, args, opts)
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  return { child, stdout: () => out, stderr: () => err, done: collect(child, opts.timeoutMs ?? 30_000, null) }
}

export { waitFor }

/**
 * `bin ARGS` (run by this Node) under a shell that holds its terminal 2 s past the exit, then
 * exits with its status: the file and arguments to give pty.spawn. node-pty drops what it has
 * not read 200 ms after its child exits, and a test process that got no CPU for that long (a
 * loaded CI machine) runs that timer before it reads, losing the last output.
 */
export function heldInTerminal (bin: keyof typeof BIN, args: string[]): [string, string[]] {
  return ['/bin/sh', ['-c', '"$@"; s=$?; sleep 2; exit $s', 'sh', process.execPath, BIN[bin], ...args]]
}

const tempDirs: string[] = []

/** Whether process `pid` runs (a zombie waiting to be reaped does not). */
/** The pid of a process of this machine whose command line is exactly `cmdline` (words joined by spaces). */
export function processWith (cmdline: string): number | undefined {
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      if (fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ') === cmdline) return Number(name)
    } catch {}
  }
  return undefined
}

export function processRuns (pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

/** A new empty directory under the system's temp dir, removed by removeTempDirs(). */
export function tempDir (prefix = 'vgrid-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  tempDirs.push(dir)
  return dir
}

/**
 * A directory the test and the guests of its agents both use (a `go` file, a shared log):
 * guests see only their workspace and what the owner shares, so agents given
 * `guestShare(dir)` in their args share it read-write. Open to every user: under root,
 * guests run as nobody.
 */
export function sharedDir (prefix = 'vgrid-share-'): string {
  const dir = tempDir(prefix)
  fs.chmodSync(dir, 0o777)
  return dir
}

/** The agent arguments that share `dir` read-write with its guests. */
export function guestShare (dir: string): string[] {
  return ['--guest-share', `${dir}:rw`]
}

/**
 * Removes every directory tempDir() made in this process (agent homes, workspaces: a sync
 * bench leaves gigabytes). Run after each test file (test/helpers/cleanup.ts) and at the end
 * of each benchmark, once the agents using them have stopped.
 */
export function removeTempDirs (): void {
  for (const d of tempDirs.splice(0)) {
    try {
      fs.rmSync(d, { recursive: true, force: true })
    } catch {
      // a test's tree deeper than the path limit: rm(1) has none
      spawnSync('rm', ['-rf', '--', d])
    }
  }
  // What agents killed outright left in memory (runtime-dir.ts), now that their homes are gone.
  sweepRuntimeDirs()
}

/** Where the agent of `home` keeps its FIFOs and guests' homes (runtime-dir.ts), once it has started. */
export function runtimeDirOf (home: string): string {
  return runtimeCandidates(home).find((d) => fs.existsSync(d)) ?? path.join(home, HOME_RUNTIME_DIR)
}

export interface AgentProc {
  home: string
  /** An empty directory, the default working directory (and so workspace) of vrun and vgrid. */
  workspace: string
  proc: ChildProcess
  peer: string
  token: string
  host: string
  /** Where it serves HTTP (`http://127.0.0.1:PORT`), when it does. */
  http?: string
  output: () => string
  vgrid (args: string[], opts?: Partial<CliOptions>): Promise<CliResult>
  vrun (args: string[], opts?: Partial<CliOptions>): Promise<CliResult>
  /** Sends the signal and waits for the process to exit. */
  stop (signal?: NodeJS.Signals): Promise<{ code: number | null, ms: number }>
}

export interface StartOptions {
  home?: string
  join?: string
  args?: string[]
  env?: Record<string, string>
  /** No --http flag: the agent serves on its default address (127.0.0.1:7322) when free. */
  defaultHttp?: boolean
  /** Written to the agent's stdin, then closed (`--join -`); by default stdin is /dev/null. */
  stdin?: string
}

const running = new Set<AgentProc>()

export async function startAgent (opts: StartOptions = {}): Promise<AgentProc> {
  const home = opts.home ?? tempDir()
  // --http on a free port: test agents run side by side, and 7322 may be a real agent's
  const args = ['agent', '--listen', '/ip4/127.0.0.1/tcp/0', ...(opts.defaultHttp === true ? [] : ['--http', '127.0.0.1:0']), ...(opts.join !== undefined ? ['--join', opts.join] : []), ...(opts.args ?? [])]
  // Through the bin's shebang, as users start it (it carries the agent's V8 flags).
  const proc = spawn(BIN.vgrid, args, {
    cwd: ROOT,
    env: { ...process.env, VGRID_HOME: home, ...opts.env },
    stdio: [opts.stdin !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe']
  }) as ChildProcessByStdio<Writable | null, Readable, Readable>
  if (opts.stdin !== undefined) {
    proc.stdin?.on('error', () => {})
    proc.stdin?.end(opts.stdin)
  }
  let output = ''
  proc.stdout.on('data', (d: Buffer) => { output += d.toString() })
  proc.stderr.on('data', (d: Buffer) => { output += d.toString() })
  let exited = false
  proc.on('exit', () => { exited = true })
  const workspace = tempDir('vgrid-ws-')
  const cli = (bin: keyof typeof BIN) => async (a: string[], o: Partial<CliOptions> = {}) => await runCli(bin, a, { home, cwd: workspace, ...o })
  const status = await waitFor(async () => {
    if (exited) throw new Error(`the agent exited at start:\n${output}`)
    if (!fs.existsSync(path.join(home, 'agent.sock'))) return undefined
    const r = await runCli('vgrid', ['status', '--json'], { home, timeoutMs: 10_000 })
    return r.code === 0 ? JSON.parse(r.stdout).status : undefined
    // a bound on a hang: ~1 s calm, past 20 s on a machine loaded 5× over
  }, 'the agent to start', 60_000, 100)
  const agent: AgentProc = {
    home,
    workspace,
    proc,
    peer: status.peer,
    token: status.joinToken,
    host: status.host,
    ...(typeof status.http === 'string' ? { http: status.http } : {}),
    output: () => output,
    vgrid: cli('vgrid'),
    vrun: cli('vrun'),
    async stop (signal = 'SIGTERM') {
      running.delete(agent)
      if (exited) return { code: proc.exitCode, ms: 0 }
      const t0 = Date.now()
      const done = new Promise<number | null>((resolve) => proc.once('exit', (code) => { resolve(code) }))
      proc.kill(signal)
      const code = await done
      return { code, ms: Date.now() - t0 }
    }
  }
  running.add(agent)
  return agent
}

/** Members as `vgrid peers --json` shows them from this agent. */
export async function peersOf (agent: AgentProc): Promise<Array<Record<string, any>>> {
  const r = await agent.vgrid(['peers', '--json'])
  if (r.code !== 0) throw new Error(`vgrid peers failed: ${r.stderr}`)
  return JSON.parse(r.stdout).peers
}

/** A grid of n agents, each joined through the first, with every view complete. */
export async function startGrid (n: number, opts: StartOptions = {}): Promise<AgentProc[]> {
  const first = await startAgent(opts)
  const rest = await Promise.all(Array.from({ length: n - 1 }, async () => await startAgent({ ...opts, join: first.token })))
  const all = [first, ...rest]
  await Promise.all(all.map(async (a) => await waitFor(async () => (await peersOf(a)).length === n, `${n} members in the view of ${a.peer}`, 15_000, 100)))
  return all
}

/** Stops every agent still running: SIGTERM first, so each stops the commands it runs; SIGKILL after a deadline. */
export async function stopAll (): Promise<void> {
  await Promise.all([...running].map(async (a) => {
    const killer = setTimeout(() => { a.proc.kill('SIGKILL') }, 5_000)
    await a.stop('SIGTERM')
    clearTimeout(killer)
  }))
}
