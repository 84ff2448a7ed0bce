/**
 * One attached run: ask the local agent to run the spec, then behave as the command would
 * locally. Output is written as it arrives, and when our stdout is slow we stop reading the
 * agent (the socket then pushes back to the executor). Stdin is forwarded with the same
 * backpressure; signals are forwarded; in tty mode the terminal is raw and its size follows
 * the window. Resolves with the exit status to use; throws a VgridError for grid and agent
 * failures (the caller prints it and exits 255).
 *
 * All I/O goes through `VrunIo`, so tests drive a session with streams and an EventEmitter.
 */
import { constants as osConstants } from 'node:os'
import type { FrameChannel } from '../common/channel.js'
import { VgridError, fromWire } from '../common/errors.js'
import { obj, str } from '../common/validate.js'
import { connectAgent, lostAgent } from '../agent/control/client.js'
import { MAX_DATA_CHUNK_BYTES, parseExecEvent, type ExecInput, type ForwardedSignal, type RunSpec } from '../protocol/session.js'
import { formatNotice, shortPeerId } from './output.js'
import { RawTerminal, type TtyInput } from './terminal.js'
import type { TtyMode } from './vrun-args.js'
import { SyncProgressView } from './progress.js'
import type { WorkspaceRef } from '../fs-sync/workspace.js'

/** Signals that reach vrun and are passed on to the command. */
export const FORWARDED_LOCAL_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const
/** After a first Ctrl-C, a command still running this long later gets the "press again" hint. */
export const INTERRUPT_HINT_DELAY_MS = 1_000
const DEFAULT_TTY_COLS = 80
const DEFAULT_TTY_ROWS = 24
const DEFAULT_TERM = 'xterm-256color'

type Out = NodeJS.WritableStream & { isTTY?: boolean, columns?: number, rows?: number }

export interface VrunIo {
  home: string
  env: NodeJS.ProcessEnv
  stdin: NodeJS.ReadableStream & TtyInput
  stdout: Out
  stderr: Out
  /** Where signals come from: `process`, or an EventEmitter in tests. */
  signals: { on (sig: string, fn: () => void): unknown, off (sig: string, fn: () => void): unknown }
}

export interface VrunRequest {
  spec: RunSpec
  on?: string
  tty: TtyMode
  /** The workspace to sync; absent with --no-sync. */
  workspace?: WorkspaceRef
  quiet?: boolean
  /** VGRID_TASK_ID when vrun runs inside a task: the run becomes its child. */
  parent?: string
  /** --name and --after…: the run is recorded as a task and waits for named siblings. */
  name?: string
  after?: Array<{ kind: string, name: string }>
}

export async function runVrun (req: VrunRequest, io: VrunIo): Promise<number> {
  const useTty = req.tty === 'yes' || (req.tty === 'auto' && io.stdin.isTTY === true && io.stdout.isTTY === true)
  const spec: RunSpec = { ...req.spec }
  if (useTty) spec.tty = { cols: io.stdout.columns || DEFAULT_TTY_COLS, rows: io.stdout.rows || DEFAULT_TTY_ROWS, term: io.env.TERM || DEFAULT_TERM }
  const request: Record<string, unknown> = { t: 'run', spec }
  if (req.on !== undefined) request.on = req.on
  if (req.parent !== undefined) request.parent = req.parent
  if (req.name !== undefined) request.name = req.name
  if (req.after !== undefined && req.after.length > 0) request.after = req.after
  if (req.workspace !== undefined) {
    // The command runs in the same relative directory of the executor's copy.
    spec.cwd ??= req.workspace.cwd
    request.workspace = req.workspace
  }
  const session = new Session(io, useTty, req.quiet === true)
  return await session.run(async (opened) => { await connectAgent(io.home, 'vrun', { first: request, opened }) })
}

/** How long a vrun without a terminal waits for room before it says why it waits. */
export const QUIET_WAIT_MS = 30_000
/** Test hook: QUIET_WAIT_MS in ms, so that a test need not wait half a minute to see it. */
export const QUIET_WAIT_ENV = 'VGRID_QUIET_WAIT_MS'

class Session {
  private started = false
  /** Placed on a member (or started): a wait is over. */
  private placed = false
  /** Set when we end the session ourselves (a signal before start, a closed stdout). */
  private abortCode: number | undefined
  /** Writes waiting for 'drain', woken when the session is aborted. */
  private readonly abortWaiters = new Set<() => void>()
  /** SIGINTs and SIGTERMs passed on so far. */
  private stopRequests = 0
  private stopStdin: (() => void) | undefined
  private readonly terminal: RawTerminal
  private readonly undo: Array<() => void> = []

  private readonly progress: SyncProgressView
  /** Set by `run`'s connect, as soon as the connection is open. */
  private channel!: FrameChannel

  constructor (private readonly io: VrunIo, private readonly tty: boolean, quiet: boolean) {
    this.terminal = new RawTerminal(io.stdin)
    this.progress = new SyncProgressView(io.stderr, quiet, io.env.VGRID_VERBOSE === '1')
  }

  /**
   * `connect` opens the connection and sends the request; it calls `opened` with the channel
   * before anything goes out, and from then on signals are ours to pass on (one before the
   * command starts ends the session, and with it the run).
   */
  async run (connect: (opened: (channel: FrameChannel) => void) => Promise<void>): Promise<number> {
    try {
      try {
        await connect((channel) => { this.channel = channel; this.listen() })
      } catch (err) {
        if (this.abortCode !== undefined) return this.abortCode
        throw err
      }
      return await this.relay()
    } finally {
      for (const fn of this.undo.splice(0).reverse()) fn()
      this.stopStdin?.()
      this.terminal.restore()
      // unset when the connect failed
      ;(this.channel as FrameChannel | undefined)?.destroy()
    }
  }

  /** Events from the agent until the exit; output written with backpressure. */
  private async relay (): Promise<number> {
    for (;;) {
      let raw: unknown
      try {
        raw = await this.channel.recv()
      } catch (err) {
        if (this.abortCode !== undefined) return this.abortCode
        throw err instanceof VgridError && err.code !== 'ERR_PEER_LOST' ? err : lostAgent()
      }
      if (this.abortCode !== undefined) return this.abortCode
      if (raw === undefined) throw lostAgent()
      const t = obj(raw, 'event').t
      if (t === 'placed') {
        this.onPlaced(raw)
        continue
      }
      if (t === 'queued') {
        this.onQueued(raw)
        continue
      }
      if (t === 'refused') {
        // That member could not take it (no disk space…): the agent places it elsewhere.
        this.progress.clear()
        const error = fromWire(obj(raw, 'refused').error)
        this.io.stderr.write(formatNotice('vrun', `${error.message}; trying another member`))
        continue
      }
      const ev = parseExecEvent(raw)
      if (ev.t !== 'sync') this.progress.clear()
      switch (ev.t) {
        case 'sync':
          this.progress.update(ev)
          break
        case 'notice':
          this.io.stderr.write(formatNotice('vrun', ev.text))
          break
        case 'outputs':
          break
        case 'started':
          this.onStarted()
          break
        case 'out':
          if (!this.started) this.onStarted()
          await this.write(ev.fd === 2 ? this.io.stderr : this.io.stdout, ev.data)
          if (this.abortCode !== undefined) return this.abortCode
          break
        case 'exit':
          return ev.code
        case 'error':
          throw fromWire(ev.error)
      }
    }
  }

  /**
   * Said once: at once where someone watches, and in a script only once the wait has grown
   * long (QUIET_WAIT_MS), so that a short wait keeps its stderr clean and a long one is not a
   * mystery.
   */
  private onQueued (raw: unknown): void {
    const line = formatNotice('vrun', `waiting: ${str(obj(raw, 'queued').message, 'message', 4096)}`)
    if (this.io.stderr.isTTY === true || this.io.env.VGRID_VERBOSE === '1') {
      this.io.stderr.write(line)
      return
    }
    const hook = Number(this.io.env[QUIET_WAIT_ENV])
    const quiet = setTimeout(() => { if (!this.placed) this.io.stderr.write(line) }, Number.isInteger(hook) && hook > 0 ? hook : QUIET_WAIT_MS)
    quiet.unref()
    this.undo.push(() => { clearTimeout(quiet) })
  }

  private onPlaced (raw: unknown): void {
    this.placed = true
    if (this.io.env.VGRID_VERBOSE !== '1') return
    const m = obj(raw, 'placed')
    const peer = str(m.peer, 'peer', 256)
    this.io.stderr.write(formatNotice('vrun', `running on ${str(m.host, 'host', 256)} (${shortPeerId(peer)})`))
  }

  /** The command runs: only now do keys and stdin belong to it. */
  private onStarted (): void {
    if (this.started) return
    this.started = true
    this.placed = true
    if (this.tty) {
      this.terminal.enter()
      const onResize = (): void => {
        const { columns, rows } = this.io.stdout
        if (columns !== undefined && columns > 0 && rows !== undefined && rows > 0) this.send({ t: 'resize', cols: columns, rows })
      }
      this.io.stdout.on('resize', onResize)
      this.undo.push(() => { this.io.stdout.off('resize', onResize) })
    }
    this.stopStdin = pumpStdin(this.io.stdin, this.channel)
  }

  private listen (): void {
    for (const sig of FORWARDED_LOCAL_SIGNALS) {
      const fn = (): void => { this.onSignal(sig) }
      this.io.signals.on(sig, fn)
      this.undo.push(() => { this.io.signals.off(sig, fn) })
    }
    // A closed stdout (`vrun cmd | head`): as in a local pipeline, the command gets SIGPIPE at
    // its next write to stdout (the executor closes that pipe) and decides what follows. The
    // run goes on to its end, so what it wrote to files still comes back, and vrun exits with
    // its status (141 when SIGPIPE killed it).
    let outClosed = false
    const onOutError = (): void => {
      if (outClosed) return
      outClosed = true
      this.send({ t: 'close-out' })
    }
    const onErrError = (): void => {} // nowhere left to report it; stdout goes on
    this.io.stdout.on('error', onOutError)
    this.io.stderr.on('error', onErrError)
    this.undo.push(() => { this.io.stdout.off('error', onOutError); this.io.stderr.off('error', onErrError) })
  }

  /**
   * Signals are passed on as they are, except that a SIGINT after the command was already
   * asked to stop (a SIGINT or a SIGTERM) becomes SIGKILL: the way out of a command that
   * ignores interrupts. Stop requests are counted rather than SIGINTs alone because the
   * kernel merges a signal sent while the same one is still pending: two quick `kill -INT`
   * may reach us as one, while `kill -TERM` then Ctrl-C always reads as "stop, now".
   */
  private onSignal (sig: ForwardedSignal): void {
    if (!this.started) {
      // Nothing runs yet (placing, or queued for capacity): dropping the connection cancels it.
      this.abort(128 + (osConstants.signals[sig as keyof typeof osConstants.signals] ?? 0))
      return
    }
    const stopRequested = this.stopRequests > 0
    if (sig === 'SIGINT' || sig === 'SIGTERM') this.stopRequests++
    if (sig !== 'SIGINT') { this.send({ t: 'signal', sig }); return }
    // In tty mode Ctrl-C is a byte for the remote terminal: a SIGINT here came from kill(1).
    const noisy = this.io.stderr.isTTY === true && !this.tty
    if (!stopRequested) {
      this.send({ t: 'signal', sig: 'SIGINT' })
      if (noisy) {
        setTimeout(() => {
          if (this.abortCode === undefined && !this.channel.closed) this.io.stderr.write(formatNotice('vrun', 'sent SIGINT; press Ctrl-C again to kill the command'))
        }, INTERRUPT_HINT_DELAY_MS).unref()
      }
    } else {
      if (noisy) this.io.stderr.write(formatNotice('vrun', 'killing the command'))
      this.send({ t: 'signal', sig: 'SIGKILL' })
    }
  }

  /** Inputs other than stdin are small and rare: fire and forget, a lost channel shows in relay(). */
  private send (input: ExecInput): void {
    this.channel.send(input).catch(() => {})
  }

  private abort (code: number): void {
    if (this.abortCode !== undefined) return
    this.abortCode = code
    for (const wake of [...this.abortWaiters]) wake()
    this.channel.destroy()
  }

  private async write (stream: Out, data: Uint8Array): Promise<void> {
    // A reader that went away: drop the data (for stdout, abort() has already ended the run).
    if ((stream as { destroyed?: boolean }).destroyed === true) return
    if (stream.write(data)) return
    // Stop reading the agent until the terminal or pipe has taken this chunk.
    await new Promise<void>((resolve) => {
      const done = (): void => {
        stream.off('drain', done)
        stream.off('close', done)
        stream.off('error', done)
        this.abortWaiters.delete(done)
        resolve()
      }
      stream.on('drain', done)
      stream.on('close', done)
      stream.on('error', done)
      this.abortWaiters.add(done)
    })
  }
}

/**
 * Forwards stdin in chunks of at most MAX_DATA_CHUNK_BYTES, pausing while a send waits, and
 * `eof` at its end. (A terminal in raw mode does not end: there Ctrl-D is a byte like any
 * other; a pipe given to `--tty yes` does, and the remote side learns it.) Returns a function
 * that stops forwarding.
 */
function pumpStdin (stdin: NodeJS.ReadableStream, channel: FrameChannel): () => void {
  let stopped = false
  let queue = Promise.resolve()
  const enqueue = (fn: () => Promise<void>): void => {
    queue = queue.then(async () => { if (!stopped) await fn() }).catch(() => { stop() })
  }
  const onData = (chunk: Buffer | string): void => {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    stdin.pause()
    enqueue(async () => {
      for (let off = 0; off < buf.byteLength; off += MAX_DATA_CHUNK_BYTES) {
        const part = buf.subarray(off, off + MAX_DATA_CHUNK_BYTES)
        await channel.send({ t: 'stdin', data: new Uint8Array(part.buffer, part.byteOffset, part.byteLength) })
      }
      if (!stopped) stdin.resume()
    })
  }
  const onEnd = (): void => { enqueue(async () => { await channel.send({ t: 'eof' }) }) }
  // An unreadable stdin (closed fd, EIO after the terminal went away) reads as ended.
  // It stays attached after we stop: an error on a stream nobody listens to would crash vrun.
  let failed = false
  const onError = (): void => { if (!failed) { failed = true; detach(); onEnd() } }
  const detach = (): void => {
    stdin.off('data', onData)
    stdin.off('end', onEnd)
    stdin.pause()
  }
  const stop = (): void => {
    if (stopped) return
    stopped = true
    detach()
  }
  stdin.on('data', onData)
  stdin.once('end', onEnd)
  stdin.on('error', onError)
  stdin.resume()
  return stop
}
