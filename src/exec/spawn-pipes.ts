/**
 * A command on plain pipes. It leads its own process group (`detached`), so signals and
 * cancellation reach its children too. Output is read one chunk at a time: a stream stays
 * paused while its last chunk is being sent, so a fast writer is held back by the pipe and
 * nothing piles up here.
 *
 * Given `pipes` (fifos.ts), its stdio are real pipes, as in a shell; without, Node's socket
 * pairs, on which `/dev/stdout` cannot be opened (used only where no FIFO can be made).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync } from 'node:fs'
import net from 'node:net'
import type { Readable, Writable } from 'node:stream'
import { STDIN_HIGH_WATER_BYTES } from './constants.js'
import { signalGroup } from './process-group.js'
import { drained } from './stream-util.js'
import type { StdioPipes } from './fifos.js'
import type { OutputSink, RawStatus, RunningCommand, SpawnOptions } from './command.js'
import { defaultLauncher, type Launcher } from './launcher.js'
import { startLine } from './niceness.js'

/** A started command's leading process: its pid, and how it ended. */
interface Started { pid: number, status: Promise<RawStatus> }

/**
 * Rejects with the spawn error (ENOENT, EACCES, …) when no process could be created. Given
 * FIFOs and a launcher (launcher.ts), the launcher starts it; otherwise Node does.
 */
export async function spawnPipes (opts: SpawnOptions, out: OutputSink, log: (msg: string) => void, pipes?: StdioPipes, launcher: Launcher | undefined = defaultLauncher()): Promise<RunningCommand> {
  let stdin: Writable, stdout: Readable, stderr: Readable
  let child: ChildProcess | undefined
  let launched: Promise<Started>
  let after = (_pid: number): void => {}
  if (pipes !== undefined && launcher !== undefined) {
    launched = launcher.start(opts, pipes.paths)
    // The child has opened its own ends by name once started (or none was made): ours would hold the pipes open.
    void launched.finally(() => { for (const fd of pipes.child) closeSync(fd) }).catch(() => {})
  } else {
    const line = startLine(opts)
    after = line.after
    try {
      child = spawn(line.file, line.argv.slice(1), {
        argv0: line.argv[0],
        cwd: opts.cwd,
        env: opts.env,
        detached: true,
        stdio: pipes === undefined ? ['pipe', 'pipe', 'pipe'] : pipes.child
      })
    } finally {
      // The child has its copies (or none was made): ours would hold the pipes open.
      if (pipes !== undefined) for (const fd of pipes.child) closeSync(fd)
    }
    launched = nodeStarted(child, log)
  }
  if (pipes === undefined) {
    stdin = child!.stdin!
    stdout = child!.stdout!
    stderr = child!.stderr!
  } else {
    stdin = new net.Socket({ fd: pipes.stdin, readable: false, writable: true })
    stdout = new net.Socket({ fd: pipes.stdout, readable: true, writable: false })
    stderr = new net.Socket({ fd: pipes.stderr, readable: true, writable: false })
  }
  const ours = [stdin, stdout, stderr]
  if (pipes !== undefined) stdin.once('close', pipes.stdinClosed)
  if (child?.pid !== undefined) opts.onPid?.(child.pid)
  const started = await launched.catch((err: unknown) => {
    for (const s of ours) s.destroy()
    pipes?.release()
    throw err
  })
  if (child === undefined) opts.onPid?.(started.pid)
  const pid = started.pid
  after(pid)

  const status = started.status
  const exited = status.then(() => {})
  // After the exit and after stdout and stderr have ended, every chunk has been handed to the
  // sink: a command that writes a lot and exits at once loses nothing.
  const ended = (s: Readable): Promise<void> => new Promise((resolve) => { if (s.destroyed) resolve(); else s.once('close', () => { resolve() }) })
  const done = Promise.all([status, ended(stdout), ended(stderr)]).then(([s]) => {
    pipes?.release()
    return s
  })

  const pump = (stream: Readable, fd: 1 | 2): void => {
    stream.on('data', (chunk: Buffer) => {
      stream.pause()
      void out(fd, chunk).then(() => { stream.resume() })
    })
    stream.on('error', (err) => { log(`child ${pid} fd ${fd}: ${err.message}`) })
  }
  pump(stdout, 1)
  pump(stderr, 2)

  // EPIPE (the command closed its stdin or exited) is normal, not a failure of the session.
  stdin.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') log(`child ${pid} stdin: ${err.message}`)
  })
  const stdinOpen = (): boolean => !stdin.destroyed && !stdin.writableEnded

  return {
    pid,
    pgid: pid,
    politeSignal: 'SIGTERM',
    exited,
    done,
    async write (data) {
      if (!stdinOpen()) return
      stdin.write(data)
      // Node's own high-water mark is 16 KiB; we let more wait so a command that reads in
      // bursts does not stall the submitter, but not without bound.
      if (stdin.writableLength > STDIN_HIGH_WATER_BYTES) await drained(stdin)
    },
    end () {
      if (stdinOpen()) stdin.end()
    },
    resize () {
      // Pipes have no window size.
    },
    async closeOutput () {
      const closed = new Promise((resolve) => { stdout.once('close', resolve) })
      stdout.destroy()
      if (!stdout.closed) await closed
      pipes?.stdoutClosed()
    },
    signal (sig) {
      signalGroup(pid, sig)
    }
  }
}

/** A child Node started: its pid once it exists, and its status at 'exit'. */
async function nodeStarted (child: ChildProcess, log: (msg: string) => void): Promise<Started> {
  await new Promise<void>((resolve, reject) => {
    const onSpawn = (): void => { child.off('error', onError); resolve() }
    const onError = (err: Error): void => { child.off('spawn', onSpawn); reject(err) }
    child.once('spawn', onSpawn)
    child.once('error', onError)
  })
  const status = new Promise<RawStatus>((resolve) => {
    child.once('exit', (code: number | null, signal: NodeJS.Signals | null) => { resolve({ code, signal }) })
  })
  // Later 'error' events (a failed kill) must not become uncaught exceptions.
  child.on('error', (err) => { log(`child ${child.pid}: ${err.message}`) })
  return { pid: child.pid as number, status }
}
