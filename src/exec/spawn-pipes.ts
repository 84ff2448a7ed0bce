/**
 * A command on plain pipes. It leads its own process group (`detached`), so signals and
 * cancellation reach its children too. Output is read one chunk at a time: a stream stays
 * paused while its last chunk is being sent, so a fast writer is held back by the pipe and
 * nothing piles up here.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import type { Readable } from 'node:stream'
import { STDIN_HIGH_WATER_BYTES } from './constants.js'
import { signalGroup } from './process-group.js'
import { drained } from './stream-util.js'
import type { OutputSink, RawStatus, RunningCommand, SpawnOptions } from './command.js'

/** Rejects with the spawn error (ENOENT, EACCES, …) when no process could be created. */
export async function spawnPipes (opts: SpawnOptions, out: OutputSink, log: (msg: string) => void): Promise<RunningCommand> {
  const child: ChildProcessWithoutNullStreams = spawn(opts.file, opts.argv.slice(1), {
    argv0: opts.argv[0],
    cwd: opts.cwd,
    env: opts.env,
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe']
  })
  if (child.pid !== undefined) opts.onPid?.(child.pid)
  await new Promise<void>((resolve, reject) => {
    const onSpawn = (): void => { child.off('error', onError); resolve() }
    const onError = (err: Error): void => { child.off('spawn', onSpawn); reject(err) }
    child.once('spawn', onSpawn)
    child.once('error', onError)
  })
  // Later 'error' events (a failed kill) must not become uncaught exceptions.
  child.on('error', (err) => { log(`child ${child.pid}: ${err.message}`) })
  const pid = child.pid as number

  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  // 'close' comes after 'exit' and after stdout and stderr have ended, so every chunk has
  // been handed to the sink by then: a command that writes a lot and exits at once loses nothing.
  const done = new Promise<RawStatus>((resolve) => {
    child.once('close', (code, signal) => { resolve({ code, signal }) })
  })

  const pump = (stream: Readable, fd: 1 | 2): void => {
    stream.on('data', (chunk: Buffer) => {
      stream.pause()
      void out(fd, chunk).then(() => { stream.resume() })
    })
    stream.on('error', (err) => { log(`child ${pid} fd ${fd}: ${err.message}`) })
  }
  pump(child.stdout, 1)
  pump(child.stderr, 2)

  // EPIPE (the command closed its stdin or exited) is normal, not a failure of the session.
  child.stdin.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') log(`child ${pid} stdin: ${err.message}`)
  })
  const stdinOpen = (): boolean => !child.stdin.destroyed && !child.stdin.writableEnded

  return {
    pid,
    pgid: pid,
    politeSignal: 'SIGTERM',
    exited,
    done,
    async write (data) {
      if (!stdinOpen()) return
      child.stdin.write(data)
      // Node's own high-water mark is 16 KiB; we let more wait so a command that reads in
      // bursts does not stall the submitter, but not without bound.
      if (child.stdin.writableLength > STDIN_HIGH_WATER_BYTES) await drained(child.stdin)
    },
    end () {
      if (stdinOpen()) child.stdin.end()
    },
    resize () {
      // Pipes have no window size.
    },
    closeOutput () {
      child.stdout.destroy()
    },
    signal (sig) {
      signalGroup(pid, sig)
    }
  }
}
