/**
 * One command's session on the executing machine: start it, stream its output, feed it the
 * submitter's inputs, report one exit status, and kill it if the submitter goes away or the
 * agent stops.
 *
 * Events, in order: `started` (pid 0 when nothing could be run: command not found or not
 * executable, then a shell-like message on fd 2), `out`*, then one `exit` after the last
 * output (`error` instead when a malformed input ended the session); or a single `error`
 * when the command could not be started at all.
 *
 * Inputs are validated one by one. A malformed one ends the session as the agent's relay
 * does for remote runs: the command is cancelled and the last event is an `error`
 * (ERR_BAD_MESSAGE) instead of `exit`, so the submitter learns why. A client that sends
 * garbage is broken, and guessing what it meant could feed the command the wrong input.
 */
import { chownSync, statSync, writeFileSync, type Stats } from 'node:fs'
import path from 'node:path'
import type { FrameChannel } from '../common/channel.js'
import { VgridError, toWire, type WireError } from '../common/errors.js'
import { createLogger, type Logger } from '../common/log.js'
import { parseExecInput, type ExecInput } from '../protocol/session.js'
import { EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_NOT_STARTED, KILL_GRACE_MS } from './constants.js'
import { commandEnv } from './environment.js'
import { resolveCommand } from './resolve-command.js'
import { ARGV_FILE, hostPath, longArgv, sandboxed } from './sandbox.js'
import { EventSender } from './event-sender.js'
import { GroupTerminator } from './process-group.js'
import { spawnPipes } from './spawn-pipes.js'
import { defaultFifoMaker, type FifoMaker, type StdioPipes } from './fifos.js'
import { spawnPty } from './spawn-pty.js'
import { defaultNicenessValue } from './niceness.js'
import { exitStatus, type OutputSink, type RunningCommand, type SpawnOptions } from './command.js'
import type { ExecResult, ServeExecOptions } from './types.js'

const defaultLog = createLogger('exec')

export async function serveExec (channel: FrameChannel, opts: ServeExecOptions): Promise<ExecResult> {
  const log = opts.log ?? defaultLog
  const { spec } = opts
  const name = spec.argv[0]
  // A function, not a property read: TypeScript would keep the first answer across awaits.
  const aborted = (): boolean => opts.signal?.aborted === true
  // Until the command runs, a failed send only means nobody will read the outcome.
  let onSendFailure = (_err: Error): void => {}
  const sender = new EventSender(channel, (err) => { onSendFailure(err) })

  const notStarted = async (error: WireError): Promise<ExecResult> => {
    await sender.send({ t: 'error', error })
    return { exitCode: EXIT_NOT_STARTED, durationMs: 0, started: false, cancelled: aborted(), error }
  }
  // As a shell does: a message on stderr and 127 / 126, not an error of the session.
  const cannotRun = async (exitCode: number, why: string): Promise<ExecResult> => {
    void sender.send({ t: 'started', pid: 0, peer: opts.peer, host: opts.host, gpus: opts.gpus.map((g) => g.index) })
    // Under a terminal the user's is raw and nothing turns \n into \r\n on the way: as a pty would.
    void sender.send({ t: 'out', fd: 2, data: new TextEncoder().encode(`vgrid: ${name}: ${why}${spec.tty !== undefined ? '\r\n' : '\n'}`) })
    await sender.send({ t: 'exit', code: exitCode })
    return { exitCode, durationMs: 0, started: false, cancelled: false }
  }

  if (aborted()) {
    return await notStarted(new VgridError('ERR_SPAWN_FAILED', `${opts.host} is stopping: ${name} was not started`, 'run it again: another member will take it').toWire())
  }
  // Blocking: one stat is microseconds, a thread-pool round trip per command is not.
  const cwdStat = statOrUndefined(opts.cwd)
  if (cwdStat?.isDirectory() !== true) {
    return await notStarted(new VgridError('ERR_SPAWN_FAILED', `the working directory ${opts.cwd} does not exist on ${opts.host}`).toWire())
  }

  const env = commandEnv(opts.env, spec.env, opts.gpus, opts.machineHasGpus)
  const sb = opts.sandbox
  // In a sandbox the command is looked up as the guest sees the machine (sandbox.ts).
  const resolved = sb === undefined
    ? await resolveCommand(name, env.PATH, opts.cwd)
    : await resolveCommand(name, env.PATH, sb.cwd, { toHost: (p) => hostPath(sb, p) })
  if (!resolved.ok) return await cannotRun(resolved.exitCode, resolved.message)

  const out: OutputSink = async (fd, data) => { await sender.out(fd, data) }
  let inner = { file: resolved.file, argv: spec.argv }
  if (sb !== undefined) {
    const long = longArgv(sb, resolved.file, spec.argv)
    if (long !== undefined) {
      const file = path.join(sb.taskHome.host, ARGV_FILE)
      writeFileSync(file, long.content, { mode: 0o600 })
      if (sb.user !== undefined) chownSync(file, sb.user.uid, sb.user.gid)
      inner = long
    }
    inner = sandboxed(spec.tty !== undefined ? { ...sb, tty: true } : sb, inner.file, inner.argv)
  }
  // Listed the moment the process exists: an agent killed right after the spawn must still
  // find the command at its next start (orphans.ts).
  let listed: number | undefined
  const onPid = (pid: number): void => {
    listed = pid
    opts.groups?.add(pid, opts.task)
  }
  // Below the owner, the command and everything it starts (niceness.ts); a guest on its cores.
  const spawnOpts: SpawnOptions = {
    file: inner.file, argv: inner.argv, cwd: opts.cwd, env, onPid, nice: opts.nice ?? defaultNicenessValue(),
    ...(sb !== undefined && sb.cores.length > 0 ? { pin: { cores: sb.cores, ...(sb.tools.taskset !== undefined ? { taskset: sb.tools.taskset } : {}) } } : {})
  }
  const startedAt = Date.now()
  let cmd: RunningCommand
  try {
    // No output can be handed to `out` before `started` is queued below: output arrives in
    // I/O callbacks, and only promise continuations run between the spawn and that line.
    cmd = spec.tty !== undefined
      ? await spawnPty(spawnOpts, spec.tty, out, (m) => { log.debug(m) })
      : await spawnPipes(spawnOpts, out, (m) => { log.debug(m) }, await realPipes(opts.fifos ?? defaultFifoMaker(), log))
  } catch (err) {
    if (listed !== undefined) opts.groups?.remove(listed)
    // The file changed between the lookup and the exec.
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return await cannotRun(EXIT_NOT_FOUND, 'command not found')
    if (code === 'EACCES') return await cannotRun(EXIT_NOT_EXECUTABLE, 'Permission denied')
    log.warn(`could not start ${name}`, err)
    return await notStarted(new VgridError('ERR_SPAWN_FAILED', `could not start ${name} on ${opts.host}: ${(err as Error).message}`).toWire())
  }
  void sender.send({ t: 'started', pid: cmd.pid, peer: opts.peer, host: opts.host, gpus: opts.gpus.map((g) => g.index) })

  const graceMs = opts.killGraceMs ?? KILL_GRACE_MS
  const group = new GroupTerminator(cmd.pgid, (m) => { log.warn(m) })
  let exited = false
  let cancelled = false
  let refused: WireError | undefined
  const cancel = (why: string, ms = graceMs): void => {
    if (exited) return
    if (!cancelled) log.debug(`cancelling ${name} (pid ${cmd.pid}): ${why}`)
    cancelled = true
    void group.terminate(cmd.politeSignal, ms)
  }
  onSendFailure = (err) => { cancel(`the submitter is gone: ${err.message}`) }
  const onAbort = (): void => { cancel('the agent is stopping', opts.abortGraceMs ?? graceMs) }
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  if (aborted()) onAbort() // it fired while we were looking for the command

  // In a sandbox nothing of the command outlives it: its PID namespace ended with its first
  // process, before bwrap exited. (bwrap leaves that process a zombie for the machine's init
  // to reap, which in a container can take a while: waiting for the group would wait for it.)
  const contained = sb !== undefined
  void cmd.exited.then(() => {
    exited = true
    // Whatever the command left running in its group ends with it, as a batch system's job
    // step does; otherwise a background child holding stdout would keep the session open.
    if (!contained) void group.terminate(cmd.politeSignal, graceMs)
  })
  const refuse = (err: unknown): void => {
    if (exited) return
    log.warn(`refused an input for ${name} (pid ${cmd.pid}); ending the session`, err)
    const wire = toWire(err)
    refused ??= { ...wire, message: `${opts.host} refused an input and ended the command: ${wire.message}` }
    cancel('a malformed input')
  }
  pumpInputs(channel, cmd, () => exited, cancel, refuse).catch(refuse)

  try {
    const status = exitStatus(await cmd.done)
    const durationMs = Date.now() - startedAt
    await sender.idle()
    if (refused !== undefined) await sender.send({ t: 'error', error: refused })
    else await sender.send(status.signal === undefined ? { t: 'exit', code: status.code } : { t: 'exit', code: status.code, signal: status.signal })
    if (!contained) await group.terminate(cmd.politeSignal, graceMs)
    const result: ExecResult = { exitCode: status.code, durationMs, started: true, cancelled }
    if (status.signal !== undefined) result.signal = status.signal
    if (refused !== undefined) result.error = refused
    return result
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
    group.dispose()
    opts.groups?.remove(cmd.pgid)
  }
}

/**
 * Feeds inputs to the command until it has exited. The end of the channel before that means
 * the submitter is gone: the command is cancelled, not given EOF, because nobody would see
 * what it does next. A read may still be pending when the session is over (a channel read
 * cannot be taken back): the caller closes or destroys the channel afterwards.
 */
async function pumpInputs (channel: FrameChannel, cmd: RunningCommand, hasExited: () => boolean, cancel: (why: string) => void, refuse: (err: unknown) => void): Promise<void> {
  for (;;) {
    let raw: unknown
    try {
      raw = await channel.recv()
    } catch (err) {
      cancel(`the channel broke: ${(err as Error).message}`)
      return
    }
    if (hasExited()) return
    if (raw === undefined) {
      cancel('the submitter closed the session')
      return
    }
    let input: ExecInput
    try {
      input = parseExecInput(raw)
    } catch (err) {
      refuse(err)
      return
    }
    switch (input.t) {
      // Waiting here is the backpressure on stdin; signals queue behind it (see index.ts).
      case 'stdin': await cmd.write(input.data); break
      case 'eof': cmd.end(); break
      case 'signal': cmd.signal(input.sig); break
      case 'resize': cmd.resize(input.cols, input.rows); break
      case 'close-out': await cmd.closeOutput(); break
    }
  }
}

let warnedNoPipes = false

/** Real pipes for the command, or undefined (socket pairs then) where none can be made. */
async function realPipes (fifos: FifoMaker, log: Logger): Promise<StdioPipes | undefined> {
  try {
    return await fifos.stdio()
  } catch (err) {
    if (!warnedNoPipes) log.warn('commands get socket pairs, not pipes, for their stdio: /dev/stdout and SIGPIPE will not work as in a shell', err)
    warnedNoPipes = true
    return undefined
  }
}

function statOrUndefined (p: string): Stats | undefined {
  try {
    return statSync(p, { throwIfNoEntry: false })
  } catch {
    return undefined
  }
}
