/**
 * `vrun [options] CMD [ARGS…]`: run a command somewhere on the grid as if it ran here. This
 * entry stays tiny: it parses the arguments, and only a real run loads the session (and with
 * it the socket client and CBOR); only help loads cac and reads the version. Exit status: the
 * command's own (128+N after signal N), 255 when the grid or the agent failed, 2 for a
 * command line to fix.
 */
import { exitCodeFor, formatUsageError, printError } from './output.js'
import { exitAfterFlush, guardStdio } from './exit.js'
import { UsageError } from './usage-error.js'
import { VRUN_OPTIONS, parseVrunArgs } from './vrun-args.js'
import { declareOptions } from './argv.js'
import { taskParent } from './task-env.js'
import type { VrunRequest } from './vrun-session.js'

const DESCRIPTION = `Runs CMD on a member of the grid that has the requested resources free, streaming its
output here and your input there, and exits with its exit status. Options end at the first
word that is not one (or at --): everything after it belongs to the command. The agent of
this machine (VGRID_HOME, default ~/.vgrid) places it; start one with \`vgrid agent\`.`

const VRUN_USAGE = 'usage: vrun [options] CMD [ARGS...]; see vrun --help'

const EXAMPLES = [
  '  $ vrun hostname                      # anywhere with a free core',
  '  $ vrun --gpus 1 nvidia-smi -L         # anywhere with a free GPU',
  '  $ vrun -P gpu-a100-2 python train.py  # two A100s on one machine',
  '  $ vrun --on lab-03 -e SEED=7 -e HOME make test',
  '  $ vrun -- ./script.sh --cpus 4        # --cpus goes to the script'
]

/** vrun's help, rendered by cac from the option table. */
export async function vrunHelp (): Promise<string> {
  const [{ cac }, { captureHelp, withDescription }, { VERSION }] = await Promise.all([import('cac'), import('./help.js'), import('../common/version.js')])
  const cli = cac('vrun')
  cli.usage('[options] CMD [ARGS...]')
  declareOptions(cli, VRUN_OPTIONS)
  cli.example(EXAMPLES.join('\n'))
  cli.globalCommand.helpCallback = withDescription(() => DESCRIPTION)
  cli.globalCommand.versionNumber = VERSION
  return captureHelp(cli)
}

export async function main (argv: string[] = process.argv.slice(2)): Promise<never> {
  guardStdio()
  let code: number
  try {
    code = await dispatch(argv)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(formatUsageError('vrun', err, err.showHelp ? await vrunHelp() : '', VRUN_USAGE))
    } else {
      printError('vrun', err)
    }
    code = exitCodeFor(err)
  }
  return await exitAfterFlush(code)
}

async function dispatch (argv: string[]): Promise<number> {
  const inv = parseVrunArgs(argv)
  switch (inv.kind) {
    case 'help':
      process.stdout.write(await vrunHelp())
      return 0
    case 'version':
      process.stdout.write(`vrun ${(await import('../common/version.js')).VERSION}\n`)
      return 0
    case 'run': {
      const [{ runVrun }, { vgridHome }] = await Promise.all([import('./vrun-session.js'), import('../agent/config.js')])
      const run: VrunRequest = { spec: inv.spec, tty: inv.tty, quiet: inv.quiet }
      if (inv.on !== undefined) run.on = inv.on
      if (inv.name !== undefined) run.name = inv.name
      if (inv.after.length > 0) run.after = inv.after
      if (inv.sync) run.workspace = (await import('../fs-sync/workspace.js')).findWorkspace(process.cwd(), inv.workspace, process.env)
      const parent = taskParent(process.env)
      if (parent !== undefined) run.parent = parent
      return await runVrun(run, {
        home: vgridHome(process.env),
        env: process.env,
        stdin: process.stdin,
        stdout: process.stdout,
        stderr: process.stderr,
        signals: process
      })
    }
  }
}

