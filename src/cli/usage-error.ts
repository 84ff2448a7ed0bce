/**
 * A command line that cannot be run as typed: an unknown option, a missing value, a bad shape.
 * It is the user's to fix, so it exits 2 (EXIT_USAGE) and is followed by a usage line, or by
 * the whole help when there was nothing to go on (no command, an unknown command).
 */
export class UsageError extends Error {
  readonly hint?: string
  /** The line printed after the error, e.g. `usage: vgrid peers [options]; see vgrid peers --help`. */
  readonly usage?: string
  readonly showHelp: boolean

  constructor (message: string, hint?: string, opts: { usage?: string, showHelp?: boolean } = {}) {
    super(message)
    this.name = 'UsageError'
    if (hint !== undefined) this.hint = hint
    if (opts.usage !== undefined) this.usage = opts.usage
    this.showHelp = opts.showHelp ?? false
  }
}
