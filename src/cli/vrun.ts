/**
 * `vrun [options] CMD [ARGS…]`: run a command somewhere on the grid as if it ran here. This
 * entry stays tiny: it parses the arguments, and only a real run loads the session (and with
 * it the socket client and CBOR); only help loads cac and reads the version. Exit status: the
 * command's own (128+N after signal N), 254 when an --after dependency failed, 255 when the
 * grid or the agent failed, 2 for a command line to fix (README, "Exit statuses").
 */
import { commandHelp, runCommand, type CommandText } from './entry.js'
import { VRUN_OPTIONS, parseVrunArgs } from './vrun-args.js'
import { taskParent } from './task-env.js'
import { noteTerminalGone } from './exit.js'
import type { VrunRequest } from './vrun-session.js'

const DESCRIPTION = `Runs CMD on a member of the grid that has the requested resources free, streaming its
output here and your input there, and exits with its exit status. Options end at the first
word that is not one (or at --): everything after it belongs to the command. The agent of
this machine (VGRID_HOME, default ~/.vgrid) places it; start one with \`vgrid agent\`.`

const EXAMPLES = [
  '  $ vrun hostname                      # anywhere with a free core',
  '  $ vrun --gpus 1 nvidia-smi -L         # anywhere with a free GPU',
  '  $ vrun -P gpu-a100-2 python train.py  # two A100s on one machine',
  '  $ vrun --on lab-03 -e SEED=7 -e HOME make test',
  '  $ vrun -- ./script.sh --cpus 4        # --cpus goes to the script'
]

const TEXT: CommandText = { name: 'vrun', description: DESCRIPTION, options: VRUN_OPTIONS, examples: EXAMPLES }

/** vrun's help, rendered by cac from the option table. */
export async function vrunHelp (): Promise<string> {
  return await commandHelp(TEXT)
}

export async function main (argv: string[] = process.argv.slice(2)): Promise<never> {
  return await runCommand(TEXT, async () => await dispatch(argv))
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
      if (inv.sync) {
        const { findWorkspace, checkRunDir } = await import('../fs-sync/workspace.js')
        run.workspace = findWorkspace(process.cwd(), inv.workspace, process.env)
        if (inv.spec.cwd !== undefined) checkRunDir(run.workspace, inv.spec.cwd)
      }
      const parent = taskParent(process.env)
      if (parent !== undefined) run.parent = parent
      // The session passes SIGHUP on to the command; from a terminal it also means ours is gone.
      if (process.stdin.isTTY || process.stdout.isTTY) process.once('SIGHUP', noteTerminalGone)
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

