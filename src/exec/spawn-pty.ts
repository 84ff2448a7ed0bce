/**
 * A command under a pseudo-terminal (@lydell/node-pty). The child is a session leader with
 * the terminal as its controlling tty; its output (stdout and stderr merged, as a terminal
 * shows them) goes out on fd 1.
 *
 * Two node-pty quirks cost output and are worked around here (see the tests in
 * test/unit/exec-pty.test.ts):
 * - libuv treats POLLHUP on the master after a short read as end-of-file, while the kernel
 *   may still hold the last few KiB the child wrote just before exiting. When the stream ends
 *   we read the master fd directly until the kernel says EIO: once the other side is closed
 *   it flushes pending input before answering, so this never waits.
 * - When the child exits, node-pty waits at most 200 ms for the stream to close and then
 *   destroys it. A stream we paused for backpressure would lose what is still unread, so a
 *   paused terminal watches its process and, once it is gone, reads the rest without pausing
 *   (it is bounded by the kernel's buffers).
 */
import fs from 'node:fs'
import type { Socket } from 'node:net'
import type { IPty } from '@lydell/node-pty'
import { PTY_EXIT_POLL_MS, PTY_TAIL_MAX_BYTES, STDIN_HIGH_WATER_BYTES } from './constants.js'
import { foregroundGroup, pidAlive, signalGroup } from './process-group.js'
import { drained } from './stream-util.js'
import { signalName, type OutputSink, type RawStatus, type RunningCommand, type SpawnOptions } from './command.js'
import type { TtyRequest } from '../protocol/session.js'
import { startLine } from './niceness.js'

/** node-pty internals we rely on; checked at run time, so a change degrades instead of breaking. */
interface PtyInternals { _socket?: Socket, fd?: number }

const EOF_CHAR = '\x04'

/** Throws when the terminal cannot be created (out of ptys, fork failure). */
export async function spawnPty (opts: SpawnOptions, tty: TtyRequest, out: OutputSink, log: (msg: string) => void): Promise<RunningCommand> {
  // Loaded on first use: the native module is only needed when someone asks for a terminal.
  const { spawn } = await import('@lydell/node-pty')
  const line = startLine(opts)
  const pty: IPty = spawn(line.file, line.argv.slice(1), {
    name: tty.term,
    cols: tty.cols,
    rows: tty.rows,
    cwd: opts.cwd,
    env: opts.env,
    // Bytes, not strings: a UTF-8 sequence split across reads must reach the user intact.
    encoding: null
  })
  const pid = pty.pid
  opts.onPid?.(pid)
  line.after(pid)
  const internals = pty as unknown as PtyInternals
  const socket = internals._socket
  if (socket === undefined || typeof internals.fd !== 'number') log('node-pty internals changed: the end of a command\'s output may be lost')
  // node-pty rethrows a stream error other than EIO (a write just after the end: EPIPE) when
  // nobody else listens for errors, which would take the whole agent down.
  socket?.on('error', (err) => { log(`pty ${pid}: ${err.message}`) })
  let ended = false

  let paused = false
  let processGone = false
  let poll: NodeJS.Timeout | undefined
  const stopPoll = (): void => { clearInterval(poll); poll = undefined }
  const watchExit = (): void => {
    poll ??= setInterval(() => {
      if (pidAlive(pid)) return
      processGone = true
      stopPoll()
      if (paused) { paused = false; pty.resume() }
    }, PTY_EXIT_POLL_MS)
  }

  pty.onData((d) => {
    const data = d as unknown as Buffer
    if (processGone) { void out(1, data); return }
    pty.pause()
    paused = true
    watchExit()
    void out(1, data).then(() => {
      if (!paused) return
      paused = false
      stopPoll()
      pty.resume()
    })
  })

  socket?.once('end', () => {
    ended = true
    const fd = internals.fd
    if (typeof fd !== 'number') return
    const buf = Buffer.alloc(64 * 1024)
    let total = 0
    while (total < PTY_TAIL_MAX_BYTES) {
      let n: number
      try {
        n = fs.readSync(fd, buf, 0, buf.length, null)
      } catch {
        break // EIO: all read and the other side is closed; EAGAIN: a process still holds it open
      }
      if (n === 0) break
      total += n
      void out(1, Buffer.from(buf.subarray(0, n)))
    }
  })

  const done = new Promise<RawStatus>((resolve) => {
    // node-pty fires this after its stream closed (or its 200 ms wait ran out), i.e. after the last onData.
    pty.onExit(({ exitCode, signal }) => {
      stopPoll()
      resolve(signal !== undefined && signal > 0 ? { code: null, signal: signalName(signal) ?? 'SIGKILL' } : { code: exitCode, signal: null })
    })
  })

  return {
    pid,
    pgid: pid,
    // What a terminal that goes away sends; an interactive shell ignores SIGTERM.
    politeSignal: 'SIGHUP',
    exited: done.then(() => {}),
    done,
    async write (data) {
      if (ended) return
      // node-pty's typings say string; it hands the value to a net.Socket, which takes bytes.
      pty.write(data as unknown as string)
      if (socket !== undefined && socket.writableLength > STDIN_HIGH_WATER_BYTES) await drained(socket)
    },
    end () {
      // A terminal has no end of input: Ctrl-D is what the line discipline turns into one.
      if (!ended) pty.write(EOF_CHAR)
    },
    async closeOutput () {
      // One terminal carries both streams: the submitter drops what it can no longer show.
    },
    resize (cols, rows) {
      try {
        pty.resize(cols, rows)
      } catch (err) {
        log(`resize of pty ${pid}: ${(err as Error).message}`) // the command has just exited
      }
    },
    signal (sig) {
      // As a terminal does: to the foreground job, which under a job-control shell is not the shell.
      signalGroup(foregroundGroup(pid) ?? pid, sig)
    }
  }
}
