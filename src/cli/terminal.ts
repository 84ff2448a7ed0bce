/**
 * The local terminal while a remote command owns it: raw mode, so every key (Ctrl-C, Ctrl-Z,
 * Ctrl-D included) goes to the remote pseudo-terminal as a byte, and no output processing,
 * so the remote terminal's bytes reach the screen as they are.
 *
 * Node's raw mode keeps ONLCR (it turns every "\n" into "\r\n" so that console.log still
 * works); the remote pty has already done that translation, and a full-screen program that
 * moves the cursor down with a bare "\n" would be drawn askew. So after entering raw mode we
 * run `stty -opost` on the terminal, as ssh does with cfmakeraw. Leaving raw mode restores
 * the terminal settings libuv saved before it (OPOST included).
 *
 * Raw mode must never outlive vrun, or the user's shell is left unusable: `restore` is
 * idempotent and also runs from the process 'exit' hook, which covers process.exit from
 * anywhere and uncaught errors (and libuv resets the terminal at exit as a last resort).
 */
import { spawnSync } from 'node:child_process'

export interface TtyInput {
  isTTY?: boolean
  setRawMode?: (raw: boolean) => unknown
}

export class RawTerminal {
  private raw = false
  private readonly onExit = (): void => { this.restore() }

  constructor (private readonly stdin: TtyInput) {}

  /** Enters raw mode when stdin is a terminal; a no-op otherwise. */
  enter (): void {
    if (this.raw || this.stdin.isTTY !== true || typeof this.stdin.setRawMode !== 'function') return
    this.stdin.setRawMode(true)
    this.raw = true
    process.once('exit', this.onExit)
    // stty works on its stdin: only our real terminal, never a stream given by a test.
    if (this.stdin === process.stdin) spawnSync('stty', ['-opost'], { stdio: ['inherit', 'ignore', 'ignore'] })
  }

  restore (): void {
    if (!this.raw) return
    this.raw = false
    process.off('exit', this.onExit)
    try {
      this.stdin.setRawMode!(false)
    } catch {
      // the terminal may already be gone (SIGHUP): nothing left to restore
    }
  }
}
