/**
 * Drives serveExec the way a submitter would, through an in-memory channel pair, with a real
 * process in a temporary directory. A session collects the events it reads; tests wait on
 * them with deadlines.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { memoryChannelPair, type FrameChannel } from '../../src/common/channel.js'
import type { Logger } from '../../src/common/log.js'
import { parseExecEvent, serveExec, type ExecEvent, type ExecInput, type ExecResult, type RunSpec, type ServeExecOptions } from '../../src/exec/index.js'
import { waitFor } from './wait.js'

export interface CapturedLog extends Logger { lines: string[] }

/** A logger that keeps lines for assertions instead of printing them. */
export function captureLog (): CapturedLog {
  const lines: string[] = []
  const add = (level: string) => (msg: string, ...args: unknown[]): void => {
    lines.push(`${level} ${msg} ${args.map((a) => (a instanceof Error ? a.message : String(a))).join(' ')}`)
  }
  return { lines, debug: add('debug'), info: add('info'), warn: add('warn'), error: add('error') }
}

const tempDirs: string[] = []

export function tempDir (): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-exec-'))
  tempDirs.push(dir)
  return dir
}

export function removeTempDirs (): void {
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
}

export function baseEnv (): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v
  return env
}

export interface SessionInit {
  spec?: Partial<RunSpec>
  opts?: Partial<ServeExecOptions>
  /** Read events in the background (default). Off for tests that read at their own pace. */
  autoRead?: boolean
  /** Unread messages the channel holds before send() waits. */
  highWater?: number
}

export class Session {
  readonly client: FrameChannel
  readonly server: FrameChannel
  readonly result: Promise<ExecResult>
  readonly events: ExecEvent[] = []
  readonly log = captureLog()
  readonly cwd: string
  /** Resolves with the final event (exit or error), or undefined if the channel ended first. */
  readonly ended: Promise<ExecEvent | undefined>

  constructor (argv: string[], init: SessionInit = {}) {
    ;[this.client, this.server] = memoryChannelPair(init.highWater)
    this.cwd = init.opts?.cwd ?? tempDir()
    const spec: RunSpec = { argv, env: {}, cpus: 1, gpus: 0, ...init.spec }
    this.result = serveExec(this.server, {
      spec, cwd: this.cwd, env: baseEnv(), gpus: [], machineHasGpus: false, peer: 'peer-test', host: 'host-test', log: this.log, ...init.opts
    })
    this.ended = init.autoRead === false ? Promise.resolve(undefined) : this.readAll()
  }

  /** The next event, validated as the CLI would. */
  async next (): Promise<ExecEvent | undefined> {
    const raw = await this.client.recv()
    if (raw === undefined) return undefined
    const ev = parseExecEvent(raw)
    this.events.push(ev)
    return ev
  }

  private async readAll (): Promise<ExecEvent | undefined> {
    for (;;) {
      const ev = await this.next().catch(() => undefined)
      if (ev === undefined || ev.t === 'exit' || ev.t === 'error') return ev
    }
  }

  async send (input: ExecInput | Record<string, unknown> | unknown): Promise<void> {
    await this.client.send(input)
  }

  bytes (fd: 1 | 2): Buffer {
    return Buffer.concat(this.events.flatMap((e) => (e.t === 'out' && e.fd === fd ? [e.data] : [])))
  }

  stdout (): string { return this.bytes(1).toString('utf8') }
  stderr (): string { return this.bytes(2).toString('utf8') }

  started (): Extract<ExecEvent, { t: 'started' }> | undefined {
    return this.events.find((e): e is Extract<ExecEvent, { t: 'started' }> => e.t === 'started')
  }

  exit (): Extract<ExecEvent, { t: 'exit' }> | undefined {
    return this.events.find((e): e is Extract<ExecEvent, { t: 'exit' }> => e.t === 'exit')
  }

  /** Waits until stdout (fd 1) matches. */
  async waitStdout (re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    return await waitFor(() => this.stdout().match(re), `stdout to match ${re}; got ${JSON.stringify(this.stdout().slice(-200))}`, timeoutMs)
  }
}

/** Runs a command to its end with optional stdin and returns the session. */
export async function run (argv: string[], init: SessionInit & { stdin?: string } = {}): Promise<{ s: Session, r: ExecResult }> {
  const s = new Session(argv, init)
  if (init.stdin !== undefined) {
    if (init.stdin.length > 0) await s.send({ t: 'stdin', data: Buffer.from(init.stdin) })
    await s.send({ t: 'eof' })
  }
  await s.ended
  return { s, r: await s.result }
}

/** Alive and not a zombie (a zombie is dead; its parent just has not reaped it yet). */
export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

export { waitFor }
