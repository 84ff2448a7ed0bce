/**
 * Real pipes for a command's stdin, stdout and stderr.
 *
 * Node's `child_process` gives a child socket pairs, not pipes: `/dev/stdout` (a link to
 * `/proc/self/fd/1`) cannot be opened on a socket (ENXIO), so `echo x > /dev/stderr`,
 * `tee /dev/stderr` or Python's `open('/dev/stdout')` fail; and a closed reader gives the
 * writer ECONNRESET, not SIGPIPE. Node cannot call pipe(2), but it can open a FIFO.
 *
 * A FIFO opened at both ends behaves as a pipe but for one thing, which `pulse` makes up for.
 *
 * mkfifo(2) has no Node binding either, so FIFOs are made by the command launcher
 * (launcher.ts), or where it is missing by the `mkfifo` program, many per call, ahead of need
 * (`FIFO_BATCH`): a command's start takes three from the stock and costs
 * a few opens and unlinks, not a process. They live in a directory only this process may
 * enter (0700), until the command ends; their own mode is 0666 so a guest running as another
 * user can reopen its own stdio through /proc/self/fd.
 *
 * The order of the opens is what keeps each end as a program expects it: the command's ends
 * are opened blocking (O_NONBLOCK belongs to the open file, which the command inherits), ours
 * non-blocking for the event loop. An open of one end blocks until the other end is open, so
 * each blocking open is made after the end it waits for.
 */
import { execFile } from 'node:child_process'
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { defaultLauncher } from './launcher.js'

/** FIFOs one `mkfifo` call makes: enough for this many commands' stdio (three each). */
export const FIFO_BATCH = 96

/** The stock is refilled when it falls below this many FIFOs. */
const FIFO_LOW_WATER = 24

const execFileP = promisify(execFile)

/** How often the ends a command may still reopen are nudged (see `FifoMaker.pulse`). */
export const FIFO_PULSE_MS = 25

/** The command's three descriptors (pass them to spawn, then close them) and ours. */
export interface StdioPipes {
  /** Read end of the command's stdin, write end of its stdout and stderr: [0, 1, 2]. */
  child: [number, number, number]
  /** The FIFOs' names, [stdin, stdout, stderr]: a process that opens them while `child` is open never waits. */
  paths: [string, string, string]
  /** Our ends: stdin's write end, stdout's and stderr's read ends. */
  stdin: number
  stdout: number
  stderr: number
  /** Our end of its stdin is closed (EOF): a later open of /dev/stdin must not wait for a writer. */
  stdinClosed: () => void
  /** Our end of its stdout is closed (`| head`): a later open of /dev/stdout must not wait for a reader. */
  stdoutClosed: () => void
  /** The command has ended: its FIFOs' names go. */
  release: () => void
}

export class FifoMaker {
  private readonly stock: string[] = []
  private refilling: Promise<void> | undefined
  private serial = 0
  private failure: Error | undefined
  private readonly pulsing = new Map<string, number>()
  private pulseTimer: NodeJS.Timeout | undefined
  private closed = false

  /** `dir` must be private to this process (it is made 0700 if missing). */
  constructor (private readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  }

  /** A directory of its own under the system's temporary directory, removed at exit. */
  static temporary (): FifoMaker {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vgrid-fifos-'))
    process.once('exit', () => { rmSync(dir, { recursive: true, force: true }) })
    return new FifoMaker(dir)
  }

  /** Starts making a stock, so the first command does not wait for `mkfifo`. */
  warm (): void {
    this.refill()
  }

  /** Opens the three pipes of one command. Rejects when FIFOs cannot be made here. */
  async stdio (): Promise<StdioPipes> {
    const paths = await this.take(3)
    const [inPath, outPath, errPath] = paths as [string, string, string]
    const opened: number[] = []
    const open = (p: string, flags: number): number => {
      const fd = openSync(p, flags)
      opened.push(fd)
      return fd
    }
    try {
      // stdin: a reader of ours first, so our write end opens at once; then the command's
      // blocking read end, which returns because a writer exists; then ours goes.
      const probe = open(inPath, constants.O_RDONLY | constants.O_NONBLOCK)
      const stdin = open(inPath, constants.O_WRONLY | constants.O_NONBLOCK)
      const child0 = open(inPath, constants.O_RDONLY)
      closeSync(probe)
      opened.splice(opened.indexOf(probe), 1)
      // stdout, stderr: our read end first (never blocks), then the command's write end.
      const stdout = open(outPath, constants.O_RDONLY | constants.O_NONBLOCK)
      const child1 = open(outPath, constants.O_WRONLY)
      const stderr = open(errPath, constants.O_RDONLY | constants.O_NONBLOCK)
      const child2 = open(errPath, constants.O_WRONLY)
      let released = false
      return {
        child: [child0, child1, child2],
        paths: [inPath, outPath, errPath],
        stdin,
        stdout,
        stderr,
        stdinClosed: () => { if (!released) this.pulse(inPath, constants.O_WRONLY) },
        stdoutClosed: () => { if (!released) this.pulse(outPath, constants.O_RDONLY) },
        release: () => {
          released = true
          for (const p of paths) {
            this.pulsing.delete(p)
            unlinkQuiet(p)
          }
        }
      }
    } catch (err) {
      for (const fd of opened) closeSync(fd)
      for (const p of paths) unlinkQuiet(p)
      throw err
    }
  }

  /**
   * Where a FIFO differs from a pipe: opening one end waits until the other end is open,
   * while a pipe's never waits. A command that opens /dev/stdin after its input ended (or
   * /dev/stdout after its reader left) would wait for ever. So, until the command ends, the
   * missing end is opened and closed again every FIFO_PULSE_MS (non-blocking, two system
   * calls): such an open then returns within that time and reads EOF, or writes into
   * SIGPIPE, as on a pipe. The names stay, in our private directory, until `release`.
   */
  private pulse (p: string, flags: number): void {
    this.pulsing.set(p, flags | constants.O_NONBLOCK)
    this.pulseTimer ??= setInterval(() => {
      for (const [name, f] of this.pulsing) {
        try {
          closeSync(openSync(name, f))
        } catch (err) {
          // ENXIO: no reader left to wake (the command closed its stdin); anything else: gone
          if ((err as NodeJS.ErrnoException).code !== 'ENXIO') this.pulsing.delete(name)
        }
      }
      if (this.pulsing.size === 0) {
        clearInterval(this.pulseTimer)
        this.pulseTimer = undefined
      }
    }, FIFO_PULSE_MS).unref()
  }

  /** Removes the stock: the last call. */
  close (): void {
    this.closed = true
    for (const p of this.stock.splice(0)) unlinkQuiet(p)
  }

  private async take (n: number): Promise<string[]> {
    while (this.stock.length < n) {
      this.failure = undefined
      this.refill()
      await this.refilling
      if (this.failure !== undefined) throw this.failure
    }
    const taken = this.stock.splice(0, n)
    if (this.stock.length < FIFO_LOW_WATER) this.refill()
    return taken
  }

  private refill (): void {
    if (this.refilling !== undefined || this.closed) return
    const names = Array.from({ length: FIFO_BATCH }, () => path.join(this.dir, `${process.pid}.${++this.serial}`))
    // Never rejects: a refill in the background has nobody to tell but the next take().
    // By the launcher (launcher.ts) where it runs: Node's own spawn forks the whole agent.
    const launcher = defaultLauncher()
    const made = launcher !== undefined ? launcher.makeFifos(names) : execFileP('mkfifo', ['-m', '0666', '--', ...names])
    this.refilling = made
      .then(() => { if (this.closed) for (const p of names) unlinkQuiet(p); else this.stock.push(...names) })
      .catch((err: Error) => {
        for (const p of names) unlinkQuiet(p)
        this.failure = new Error(`could not make pipes with mkfifo: ${err.message}`)
      })
      .finally(() => { this.refilling = undefined })
  }
}

/**
 * Removes a FIFO's name, if it is still there: one unlink(2), where rmSync's `force` looks
 * first (a stat) and walks its options, three times per command.
 */
function unlinkQuiet (p: string): void {
  try { unlinkSync(p) } catch {}
}

let fallback: FifoMaker | undefined

/** The maker of a process that was given none (tests, tools): one temporary directory. */
export function defaultFifoMaker (): FifoMaker {
  fallback ??= FifoMaker.temporary()
  return fallback
}
