/**
 * What the entries of vrun and vbatch share: help rendered by cac from the option table
 * (cac, help.ts and the version are loaded only when help is asked for), and a main that
 * turns what dispatch throws into a message and an exit status.
 */
import { exitCodeFor, formatUsageError, printError, type Prog } from './output.js'
import { exitAfterFlush, guardStdio } from './exit.js'
import { UsageError } from './usage-error.js'
import { declareOptions, type CliOption } from './argv.js'

export interface CommandText {
  name: Exclude<Prog, 'vgrid'>
  description: string
  options: readonly CliOption[]
  examples: string[]
}

export async function commandHelp (t: CommandText): Promise<string> {
  const [{ cac }, { captureHelp, withDescription }, { VERSION }] = await Promise.all([import('cac'), import('./help.js'), import('../common/version.js')])
  const cli = cac(t.name)
  cli.usage('[options] CMD [ARGS...]')
  declareOptions(cli, t.options)
  cli.example(t.examples.join('\n'))
  cli.globalCommand.helpCallback = withDescription(() => t.description)
  cli.globalCommand.versionNumber = VERSION
  return captureHelp(cli)
}

/** Runs `dispatch` and exits with its status, or with the error's (a usage error with the usage line or the help). */
export async function runCommand (t: CommandText, dispatch: () => Promise<number>): Promise<never> {
  guardStdio()
  let code: number
  try {
    code = await dispatch()
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(formatUsageError(t.name, err, err.showHelp ? await commandHelp(t) : '', `usage: ${t.name} [options] CMD [ARGS...]; see ${t.name} --help`))
    } else {
      printError(t.name, err)
    }
    code = exitCodeFor(err)
  }
  return await exitAfterFlush(code)
}
