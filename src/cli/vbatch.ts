/**
 * `vbatch [options] CMD [ARGS…]`: run a command on the grid in the background. The local agent
 * owns the task from then on (its record, its log, its retries); vbatch prints the task's id
 * and exits at once, or with -f stays to stream the output and exits with the task's status.
 * Like vrun's entry this one stays tiny: the socket client, the workspace finder and cac are
 * loaded only by what needs them. Exit status: 0 once submitted; with -f the task's
 * (taskExitCode: README, "Exit statuses"); 255 when the grid or the agent failed; 2 for a
 * command line to fix.
 */
import { commandHelp, runCommand, type CommandText } from './entry.js'
import { VBATCH_OPTIONS, batchRequest, parseVbatchArgs } from './vbatch-args.js'
import { taskParent } from './task-env.js'
import { dashboardTaskUrl } from '../http/address.js'

const DESCRIPTION = `Submits CMD as a task that runs on a member of the grid with the requested resources
free, and prints its id (one per shard with -N) without waiting: the agent of this machine
(VGRID_HOME, default ~/.vgrid) keeps the task, its output and its state, whatever happens to
this terminal. The workspace is synced as with vrun. Options end at the first word that is
not one (or at --): everything after it belongs to the command.
Tasks wait for others by name with --after-success, --after-fail and --after; a task whose
dependency cannot be met ends upstream-failed, and so do the tasks waiting for it.
Run inside a task, vbatch makes a sub-task of it. See \`vgrid task --help\` to list, follow,
wait for and cancel tasks.`

const EXAMPLES = [
  '  $ vbatch ./simulate.sh --seed 7          # prints the task id, runs in the background',
  '  $ vbatch -f --gpus 1 python train.py     # stay attached; Ctrl-C detaches',
  '  # a pipeline: each step starts once the one before it has succeeded',
  '  $ vbatch --name fetch ./fetch.sh',
  '  $ vbatch --name prep --after-success fetch ./prep.sh',
  '  $ vbatch --after-success prep --gpus 1 python train.py',
  '  # fan-out over inputs, then wait for all',
  '  $ ls inputs/*.csv | xargs -n1 vbatch python process.py > ids',
  '  $ xargs -n1 vgrid task wait < ids',
  '  # 8 shards of one command; each reads VGRID_SHARD_INDEX and VGRID_SHARD_COUNT',
  '  $ vbatch -N 8 --cpus 4 python sweep.py',
  '  $ vbatch -N 4 --gang --gpus 1 torchrun train.py   # all four at once, or none'
]

const TEXT: CommandText = { name: 'vbatch', description: DESCRIPTION, options: VBATCH_OPTIONS, examples: EXAMPLES }

/** vbatch's help, rendered by cac from the option table. */
export async function vbatchHelp (): Promise<string> {
  return await commandHelp(TEXT)
}

/** The dashboard's page of the task (of the first shard and how many more), as vbatch prints it. */
export function taskLinks (dashboard: string, ids: readonly string[]): string {
  const more = ids.length > 1 ? ` (and ${ids.length - 1} more shard${ids.length === 2 ? '' : 's'})` : ''
  return `  ${dashboardTaskUrl(dashboard, ids[0]!)}${more}\n`
}

export async function main (argv: string[] = process.argv.slice(2)): Promise<never> {
  return await runCommand(TEXT, async () => await dispatch(argv))
}

async function dispatch (argv: string[]): Promise<number> {
  const inv = parseVbatchArgs(argv)
  switch (inv.kind) {
    case 'help':
      process.stdout.write(await vbatchHelp())
      return 0
    case 'version':
      process.stdout.write(`vbatch ${(await import('../common/version.js')).VERSION}\n`)
      return 0
    case 'batch': {
      const [{ call }, { vgridHome }, { findWorkspace, checkRunDir }] = await Promise.all([
        import('../agent/control/client.js'), import('../agent/config.js'), import('../fs-sync/workspace.js')])
      const workspace = inv.sync ? findWorkspace(process.cwd(), inv.workspace, process.env) : undefined
      if (workspace !== undefined && inv.spec.cwd !== undefined) checkRunDir(workspace, inv.spec.cwd)
      const home = vgridHome(process.env)
      const { ids, dashboard } = await call(home, { t: 'batch', batch: batchRequest(inv, workspace, taskParent(process.env)) }, { client: 'vbatch' })
      if (!inv.follow) {
        process.stdout.write(ids.map((id) => `${id}\n`).join(''))
        // For the person at a terminal, under the id; a script reading the ids gets only those.
        if (dashboard !== undefined && !inv.quiet && process.stderr.isTTY === true) process.stderr.write(taskLinks(dashboard, ids))
        return 0
      }
      const { followTasks } = await import('./vbatch-follow.js')
      return await followTasks(ids, { home, quiet: inv.quiet, stdout: process.stdout, stderr: process.stderr, signals: process })
    }
  }
}
