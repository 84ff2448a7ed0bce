/**
 * `vgrid`: start this machine's agent, and look at the grid through it. The commands and
 * their options are declared to cac as data; `parseVgridArgs` turns argv into a typed
 * invocation (or a UsageError) without side effects, so tests call it directly; `run`
 * carries an invocation out, lazy-importing only what that command needs: help never loads
 * the socket client, and only `vgrid agent` loads the agent (and libp2p), after its flags
 * have been validated. Errors become exit codes in `main` only (see output.ts).
 */
import { cac, type CAC, type Command } from 'cac'
import { VERSION } from '../common/version.js'
import type { AgentConfig, AgentFlags, PolicyPatch } from '../agent/config.js'
import type { TaskInvocation } from './vgrid-task.js'
import { captureHelp, withDescription } from './help.js'
import { UsageError } from './usage-error.js'
import { exitAfterFlush, guardStdio } from './exit.js'
import { SHELLS, type Shell } from './completion.js'

export type VgridInvocation =
  | { kind: 'help', text: string }
  | { kind: 'version', text: string }
  /** Flags as typed; `agentConfig` validates them into the agent's configuration. */
  | { kind: 'agent', flags: AgentFlags }
  /** `vgrid agent set`: only the policy flags; `agentSetPatch` validates them. */
  | { kind: 'agent-set', flags: AgentFlags }
  /** `vgrid agent stop [--drain]`. */
  | { kind: 'agent-stop', drain: boolean }
  | { kind: 'peers', json: boolean }
  | { kind: 'status', json: boolean }
  | { kind: 'join-token' }
  /** `vgrid ui [--url]`. */
  | { kind: 'ui', urlOnly: boolean }
  /** `vgrid service install|uninstall`; the token is read and checked when it runs. */
  | { kind: 'service', action: 'install' | 'uninstall', system: boolean, print: boolean, join?: string, joinFile?: string, guestUser?: string }
  /** `vgrid completion bash|zsh|fish`. */
  | { kind: 'completion', shell: Shell }
  | TaskInvocation

const DESCRIPTIONS: Record<string, string> = {
  '': `Turns the machines of a lab into one pool of compute. Every machine runs an agent
(\`vgrid agent\`); \`vrun CMD\` then runs a command on any member as if it ran here, and
\`vbatch CMD\` runs one in the background (see \`vgrid task\`).
The commands talk to the agent of this machine over $VGRID_HOME/agent.sock
(VGRID_HOME defaults to ~/.vgrid).`,
  agent: `Runs this machine's agent in the foreground (stop it with Ctrl-C). Started with no
--join or --peer on a fresh home, it creates a new grid and prints the line to run on the
other machines. The join token is the grid's secret: give it with --join-file FILE,
VGRID_JOIN_TOKEN or --join - (stdin), not on the command line, which every user of the
machine can read. An agent that reaches no member within 10 s says so (stderr, vgrid
status). What the machine lends (default: all of it) can also be set in $VGRID_HOME/config
(JSON) or VGRID_CPUS, VGRID_GPUS, VGRID_MEM, VGRID_POOL, VGRID_LABELS, VGRID_LISTEN,
VGRID_MAX_TASKS, VGRID_NICE, VGRID_ONLY_WHEN_IDLE, VGRID_ACCEPT_FROM, VGRID_HTTP,
VGRID_HTTP_CERT and VGRID_HTTP_KEY; flags win.

The agent serves an HTTP API and a dashboard on --http (default 127.0.0.1:7322; when that
port is taken, another agent of this machine has it, and this one goes on without; \`off\`:
none). Any address but loopback needs TLS: --http-cert and --http-key (PEM files). The API
takes the token of $VGRID_HOME/http.token; \`vgrid ui\` opens the dashboard.

Guests (the commands the grid runs here) run at --nice (default 10, 0–19), at most
--max-tasks at once. With --only-when-idle the machine lends only while its owner's own
load (all CPU time but the grid's commands' and the agent's) stays below 25 % of the cores,
averaged over 10 s: above that it lends nothing and stops the guests (SIGTERM, SIGKILL
after 5 s; with vbatch --retries they are placed elsewhere); it lends again once the load
has stayed below 25 % for 60 s. With --accept-from PEER,… only those members (peer ids, as
\`vgrid peers\` shows them) may run commands here; others are refused, and placement passes
this machine by for them. Commands typed here are never refused.

  vgrid agent set [--cpus N|all] [--gpus LIST] [--mem SIZE|all] [--max-tasks N|unlimited]
                  [--nice N] [--only-when-idle | --no-only-when-idle] [--accept-from WHO|all]
                  [--pause | --resume]
changes the running agent's policy at once (lowering a limit stops no running command, it
only keeps new ones out; --cpus 0 lends no core, --max-tasks 0 runs no command; --accept-from
there also takes a member's host name or a unique prefix of its peer id, saved as its peer
id), saves it in $VGRID_HOME/config, and prints the policy in force; with no option it only
prints it. A flag or VGRID_* variable given at the next start still wins over the file.
--pause: the machine takes no new command (from other members, and none of its owner's
through vgrid: they go to other members); the commands running go on. Placement passes it
by and \`vgrid peers\` shows it paused. It stays paused across a restart of the agent (saved
in the config file) until --resume.

  vgrid agent stop [--drain]
stops the running agent: at once, ending the commands running here (as Ctrl-C in its
terminal does); with --drain, only once they have ended. Meanwhile it takes no new command
(placement goes elsewhere; \`vgrid peers\` shows it draining), and the command prints how
many still run as they end. Ctrl-C there leaves the agent draining; \`vgrid agent stop\`
then stops it at once, \`vgrid agent set --resume\` calls the drain off.`,
  peers: `Lists the members of the grid as this agent sees them: what each lends, what is free
now (free/lent), the tasks it runs and when it was last heard from. * marks this agent.
--json prints {"peers": [...]} as the agent sent it, for scripts.`,
  status: `Shows this agent: peer id, host, version, home, listen addresses, the size of the grid,
and the line that adds another machine. --json prints {"status": {...}} for scripts.`,
  ui: `Opens this agent's dashboard in your browser, logged in through a link that works once,
within a minute. Where there is no desktop (no DISPLAY or WAYLAND_DISPLAY), or with --url, it
prints the link instead: open it in a browser of this machine (or through ssh -L 7322:127.0.0.1:7322).`,
  'join-token': `Prints the token that adds a machine to this grid: there, \`vgrid agent --join-file
FILE\` (or VGRID_JOIN_TOKEN, or --join - with the token on stdin). The token holds the grid's
secret key: give it only to machines you trust, never on a command line (\`ps\` shows those).`,
  service: `Runs this machine's agent as a systemd service that restarts when it fails.
  install     writes the unit and, where systemd answers, enables and starts it (else it
              prints the systemctl commands to run). A user unit (default) goes to
              ~/.config/systemd/user and runs with your user's systemd (at boot too after
              \`loginctl enable-linger\`); --system writes /etc/systemd/system/vgrid.service
              (as root), which starts at boot and runs the agent as root, its home
              /var/lib/vgrid, its guests as --guest-user (default nobody), never root.
              A join token (--join-file FILE, VGRID_JOIN_TOKEN or --join -) is checked and
              kept in the agent's home, mode 0600; the unit names that file, never the token.
  uninstall   stops and disables it, removes the unit and the kept token; the home stays.
--print shows the unit (or what would be removed) and changes nothing.`,
  completion: `Prints a script that completes vgrid's commands, actions and options in your shell:
  bash  source <(vgrid completion bash)      in ~/.bashrc
  zsh   source <(vgrid completion zsh)       in ~/.zshrc, after compinit
  fish  vgrid completion fish > ~/.config/fish/completions/vgrid.fish`,
  task: `Looks at the tasks that vbatch (and vrun) started, wherever they run:
  list              the tasks of the last 24 h, at most the newest 50 submissions (a fan-out
                    is one; --all: every task), sub-tasks indented under the task that
                    started them; --json prints {"tasks": [...], "hidden": N}
  show ID           one task in full: state, host, dependencies, attempts, sub-tasks
  log ID            its output so far (-f: and on until it ends, then exit with its status)
  cancel ID         stop it and its sub-tasks
  wait ID           wait for it to end and exit with its status: 0 when it succeeded, its
                    command's exit status when that failed (1 when only its sub-tasks did),
                    130 when cancelled, 254 when a dependency failed, 255 when it was lost
                    or the grid failed (README, "Exit statuses"); it waits through a
                    restart of the task's owner (for up to 60 s of absence)
ID is a task id as vbatch printed it, or a unique prefix of one (the 12 digits of list), from
any member; or the name given with --name (NAME[i] for shard i of vbatch -N), looked up on
every member, nearest first: the tasks of this workspace (a pipeline's sub-tasks included),
then those submitted through this machine, then the grid; the newest there. When two
members' tasks are equally near (created within a second, or both still running), it lists
them and exits 2: give an id.
cancel and wait take the name of a fan-out whole: every shard is cancelled, or waited for
(0 when all succeeded, else the status of the first shard that did not).`
}

/** What each \`vgrid task\` action takes: its options (cac's names) and whether it needs an ID. */
const TASK_ACTIONS: Record<TaskInvocation['action'], { options: readonly string[], id: boolean }> = {
  list: { options: ['all', 'json'], id: false },
  show: { options: ['json'], id: true },
  log: { options: ['f', 'follow', 'stderrOnly'], id: true },
  cancel: { options: [], id: true },
  wait: { options: [], id: true }
}
const TASK_USAGE = 'usage: vgrid task list|show|log|cancel|wait [ID] [options]; see vgrid task --help'

/** The parser: commands and options only; running them is `main`'s business. */
export function createVgridCli (): CAC {
  const cli = cac('vgrid')
  cli.usage('<command> [options]')
  cli.command('agent [action]', 'Run this machine\'s agent (the first one creates a grid); `agent set` changes its policy, `agent stop` stops it')
    .usage('agent [options]  |  agent set [policy options]  |  agent stop [--drain]')
    .option('--join-file <FILE>', 'Join the grid of the token in FILE (printed by `vgrid join-token` on a member); or set VGRID_JOIN_TOKEN')
    .option('--join <TOKEN>', 'Join the grid of this token; - reads it from stdin (on the command line, every user of the machine sees it)')
    .option('--peer <MULTIADDR>', 'Dial this member at start; needs the grid\'s swarm key in $VGRID_HOME (repeatable)')
    .option('--listen <MULTIADDR>', 'Listen on this address (repeatable; default /ip4/0.0.0.0/tcp/7321)')
    .option('--cpus <N>', 'Cores to lend (default: all)')
    .option('--gpus <LIST>', 'GPUs to lend: indexes such as 0,1, or none, or all (default: all)')
    .option('--mem <SIZE>', 'Memory to lend, such as 16G (default: all)')
    .option('--cache-size <SIZE>', 'Disk for synced chunks in $VGRID_HOME/store, least recently used evicted (default: 10G)')
    .option('--keep-results <DURATION>', 'Keep the outputs and exit of another member\'s task that ended while its owner was away, this long (default: 7d)')
    .option('--pool <NAME>', 'Put this machine in a named pool (repeatable)')
    .option('--label <KEY=VAL>', 'Tag this machine, e.g. rack=b2 (repeatable)')
    .option('--max-tasks <N>', 'Run at most N guest commands at once (default: unlimited)')
    .option('--nice <N>', 'Niceness of guest commands, 0–19 (default: 10)')
    .option('--only-when-idle', 'Lend only while the owner\'s own load is below 25 % of the cores (--no-only-when-idle: always)')
    .option('--accept-from <PEER>', 'Run commands only from these members, by peer id (repeatable or comma-separated; default: all)')
    .option('--isolation <MODE>', 'sandbox: every guest in a bubblewrap sandbox (default); none: guests run as this user, unconfined')
    .option('--guest-net <MODE>', 'on: guests reach the network (default); none: only their own loopback')
    .option('--guest-user <NAME>', 'Under root, the user guests run as (default: nobody; never root)')
    .option('--guest-share <DIR>', 'Let guests see this directory at its path: read-only, or read-write as DIR:rw (repeatable)')
    .option('--pause', 'agent set: take no new command (running ones go on); kept across a restart')
    .option('--resume', 'agent set: take new commands again (and call off a drain)')
    .option('--drain', 'agent stop: stop once the commands running here have ended, taking no new one meanwhile')
    .option('--http <ADDR:PORT>', 'Serve the HTTP API and dashboard here, or off (default 127.0.0.1:7322)')
    .option('--http-cert <FILE>', 'TLS certificate (PEM) of the HTTP server; needed with an address other than loopback')
    .option('--http-key <FILE>', 'The private key (PEM) of --http-cert')
    .example('  $ vgrid agent                                   # first machine: creates a grid')
    .example('  $ vgrid agent --join-file grid.token --gpus 0,1   # another machine joins')
    .example('  $ vgrid join-token | ssh lab-02 vgrid agent --join -   # or: the token on stdin')
    .example('  $ vgrid agent --only-when-idle --max-tasks 4     # a workstation lends when its owner is away')
    .example('  $ vgrid agent set --cpus 2 --nice 15             # change the running agent\'s policy')
    .example('  $ vgrid agent set --pause                        # lend nothing new; --resume to lend again')
    .example('  $ vgrid agent stop --drain                       # stop once the guests here have ended')
  cli.command('peers', 'List the members of the grid and what they have free').usage('peers [--json]')
    .option('--json', 'Print JSON for scripts')
    .example('  $ vgrid peers')
    .example('  $ vgrid peers --json | jq \'.peers[] | select(.load.gpusFree | length > 0) | .resources.host\'')
  cli.command('status', 'Show this agent and the line that adds another machine').usage('status [--json]')
    .option('--json', 'Print JSON for scripts')
    .example('  $ vgrid status')
  cli.command('ui', 'Open this agent\'s dashboard in a browser (a one-time login link)').usage('ui [--url]')
    .option('--url', 'Only print the login link')
    .example('  $ vgrid ui')
    .example('  $ vgrid ui --url     # on a machine without a desktop')
  cli.command('join-token', 'Print the token that adds a machine to this grid')
    .example('  $ vgrid join-token | ssh lab-02 vgrid agent --join -')
    .example('  $ (umask 077; vgrid join-token > grid.token)   # for --join-file, readable by you only')
  cli.command('service <action>', 'Run the agent as a systemd service: install, uninstall').usage('service install|uninstall [--system] [--print] [--join-file FILE]')
    .option('--system', 'A system unit: starts at boot, the agent as root, guests as --guest-user')
    .option('--print', 'Print the unit (install) or what would be removed (uninstall); change nothing')
    .option('--dry-run', 'The same as --print')
    .option('--join-file <FILE>', 'install: the agent joins the grid of the token in FILE at each start (or VGRID_JOIN_TOKEN)')
    .option('--join <TOKEN>', 'install: the same, the token given here; - reads it from stdin')
    .option('--guest-user <NAME>', 'install --system: the user guests run as (default: nobody)')
    .example('  $ vgrid service install --join-file grid.token')
    .example('  $ vgrid join-token | ssh lab-02 sudo /opt/vgrid/bin/vgrid.js service install --system --join -')
    .example('  $ vgrid service install --print')
  cli.command('completion <shell>', 'Print a shell completion script: bash, zsh or fish').usage('completion bash|zsh|fish')
    .example('  $ source <(vgrid completion bash)')
  cli.command('task <action> [id]', 'Look at and control tasks: list, show, log, cancel, wait').usage('task list|show|log|cancel|wait [ID] [options]')
    .option('--all', 'list: every task, not only those of the last 24 h')
    .option('--json', 'list, show: print JSON for scripts')
    .option('-f, --follow', 'log: keep streaming until the task ends, then exit with its status')
    .option('--stderr-only', 'log: only what the task wrote to stderr')
    .example('  $ vgrid task list')
    .example('  $ vgrid task log -f 3f2a9c01b7e4')
    .example('  $ vbatch --name train ./train.sh && vgrid task log -f train')
    .example('  $ vbatch --name prep ./prep.sh && vbatch --after-success prep ./train.sh')
    .example('  $ id=$(vbatch ./long-job.sh) && vgrid task wait "$id" && echo done')
  cli.option('-h, --help', 'Show help')
  cli.option('-v, --version', 'Show the version')
  // Set by hand rather than with cli.help()/cli.version(), which print from inside parse().
  cli.globalCommand.versionNumber = VERSION
  cli.globalCommand.helpCallback = withDescription(() => DESCRIPTIONS[cli.matchedCommand?.name ?? ''])
  cli.example('  $ vgrid agent            # on the first machine\n  $ vrun --gpus 1 nvidia-smi')
  return cli
}

/** argv without the node and script paths; throws UsageError for anything to fix. */
export function parseVgridArgs (argv: readonly string[]): VgridInvocation {
  const cli = createVgridCli()
  // `--nice -5`: the value is -5, not an option -5 (mri would take it for one).
  const { args, options } = cli.parse(['node', 'vgrid', ...joinDashValues(argv)], { run: false })
  const command = cli.matchedCommand
  if (options.help === true) return { kind: 'help', text: captureHelp(cli) }
  // With a command too (`vgrid agent --version` must not start an agent).
  if (options.version === true) return { kind: 'version', text: `vgrid ${VERSION}\n` }
  if (command === undefined) {
    if (args.length === 0) throw new UsageError('no command given', undefined, { showHelp: true })
    const typed = String(args[0]).toLowerCase()
    const meant = Object.hasOwn(MEANT, typed) ? MEANT[typed] : undefined
    if (meant !== undefined) throw new UsageError(`unknown command ${args[0]}`, `did you mean \`${meant}\`?`, { usage: VGRID_USAGE })
    throw new UsageError(`unknown command ${args[0]}`, undefined, { showHelp: true })
  }
  checkOptions(cli, command, options)
  if (command.name === 'task') return taskInvocation(argv, options)
  if (command.name === 'service') return serviceInvocation(command, args, options)
  if (command.name === 'completion') return completionInvocation(command, args, options)
  if (command.name === 'agent') Object.assign(options, rawAgentValues(argv))
  if (command.name === 'agent' && args[0] === 'set') return agentSetInvocation(args.slice(1), options)
  if (command.name === 'agent' && args[0] === 'stop') return agentStopInvocation(args.slice(1), options)
  if (command.name === 'agent') refuseActionOptions(command, options)
  const extra = [...args, ...(options['--'] as string[] ?? [])]
  if (extra.length > 0) throw usage(command, `unexpected argument ${extra[0]}`)
  switch (command.name) {
    case 'agent': return { kind: 'agent', flags: agentFlags(options) }
    case 'peers': return { kind: 'peers', json: options.json === true }
    case 'status': return { kind: 'status', json: options.json === true }
    case 'ui': return { kind: 'ui', urlOnly: options.url === true }
    default: return { kind: 'join-token' }
  }
}

function serviceInvocation (command: Command, args: readonly unknown[], options: Record<string, unknown>): VgridInvocation {
  const [action, ...rest] = [...args, ...(options['--'] as string[] ?? [])].map(String)
  if (action !== 'install' && action !== 'uninstall') throw usage(command, `unknown service action ${action ?? ''}`.trim(), 'expected install or uninstall')
  if (rest.length > 0) throw usage(command, `unexpected argument ${rest[0]!}`)
  const last = (v: unknown): unknown => [v].flat().at(-1)
  const text = (v: unknown): string | undefined => v === undefined ? undefined : String(last(v))
  const inv: VgridInvocation = { kind: 'service', action, system: last(options.system) === true, print: last(options.print) === true || last(options.dryRun) === true }
  for (const [k, v] of [['join', text(options.join)], ['joinFile', text(options.joinFile)], ['guestUser', text(options.guestUser)]] as const) {
    if (v === undefined) continue
    if (action === 'uninstall') throw usage(command, `option --${kebab(k)} applies to vgrid service install`)
    inv[k] = v
  }
  if (inv.guestUser !== undefined && !inv.system) throw usage(command, '--guest-user applies to a system unit (--system)', 'a user unit runs guests in a sandbox as your own user')
  return inv
}

/** After an error with no command to go on. */
const VGRID_USAGE = 'usage: vgrid <command> [options]; see vgrid --help'

/** What users of other tools (Slurm, Velda, Docker, Ray) type first, and ours for it. */
const MEANT: Record<string, string> = {
  tasks: 'vgrid task list',
  ps: 'vgrid task list',
  ls: 'vgrid task list',
  list: 'vgrid task list',
  squeue: 'vgrid task list',
  log: 'vgrid task log ID',
  logs: 'vgrid task log ID',
  show: 'vgrid task show ID',
  cancel: 'vgrid task cancel ID',
  kill: 'vgrid task cancel ID',
  scancel: 'vgrid task cancel ID',
  wait: 'vgrid task wait ID',
  run: 'vrun CMD',
  submit: 'vbatch CMD',
  batch: 'vbatch CMD',
  join: 'vgrid agent --join TOKEN',
  start: 'vgrid agent',
  install: 'vgrid service install',
  systemd: 'vgrid service install',
  token: 'vgrid join-token',
  nodes: 'vgrid peers',
  members: 'vgrid peers',
  sinfo: 'vgrid peers',
  info: 'vgrid status',
  set: 'vgrid agent set',
  config: 'vgrid agent set',
  completions: 'vgrid completion bash|zsh|fish'
}

/** cac accepts unknown options and missing values silently; we refuse both. */
function checkOptions (cli: CAC, command: Command, options: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(options)) {
    if (name === '--') continue
    const opt = command.hasOption(name) ?? cli.globalCommand.hasOption(name)
    const shown = name.length === 1 ? `-${name}` : `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
    if (opt === undefined) throw usage(command, `unknown option ${shown}`)
    if (opt.required === true && [value].flat().some((v) => typeof v === 'boolean')) {
      throw usage(command, `option ${shown} needs a value (${opt.rawName.replace(/^.*<(.*)>.*$/, '$1')})`,
        `a value that starts with - must be attached: ${shown}=VALUE`)
    }
  }
}

/**
 * `vgrid task ACTION [ID]`. The words come from argv rather than from cac, whose mri turns
 * numeric-looking words into numbers (a task id such as 0123456789 would lose its zero) and
 * takes the word after `--stderr-only` as its value; this is sound because no option of
 * \`task\` (nor -h, -v) takes a value. For the same reason a flag counts as given whatever
 * value mri gave it.
 */
function taskInvocation (argv: readonly string[], options: Record<string, unknown>): TaskInvocation {
  const dashes = argv.indexOf('--')
  const words = [...(dashes === -1 ? argv : argv.slice(0, dashes)).filter((a) => !a.startsWith('-') || a === '-'), ...(dashes === -1 ? [] : argv.slice(dashes + 1))]
  const [, action, id, ...rest] = words
  const given = (name: string): boolean => options[name] !== undefined && options[name] !== false
  const fail = (message: string, hint?: string): UsageError => new UsageError(message, hint, { usage: TASK_USAGE })
  if (action === undefined) throw fail('vgrid task needs an action: list, show, log, cancel or wait')
  if (!Object.hasOwn(TASK_ACTIONS, action)) throw fail(`unknown task action ${action} (expected list, show, log, cancel or wait)`)
  const act = action as TaskInvocation['action']
  const spec = TASK_ACTIONS[act]
  for (const [name, value] of Object.entries(options)) {
    if (name === '--' || value === undefined || value === false || name === 'help' || name === 'h' || spec.options.includes(name)) continue
    const shown = name.length === 1 ? `-${name}` : `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
    throw fail(`option ${shown} does not apply to vgrid task ${act}`)
  }
  if (!spec.id) {
    if (id !== undefined) throw fail(`unexpected argument ${id}`)
    return { kind: 'task', action: 'list', all: given('all'), json: given('json') }
  }
  if (id === undefined) throw fail(`vgrid task ${act} needs a task ID or name`, 'give the id vbatch printed (or a unique prefix: vgrid task list shows 12 digits), or the name given with --name')
  if (rest.length > 0) throw fail(`unexpected argument ${rest[0]!}`)
  const ref = /^[0-9a-fA-F]{1,16}$/.test(id) ? id.toLowerCase() : id
  // eslint-disable-next-line no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(id)) throw fail(`${JSON.stringify(id)} is neither a task ID nor a task name`, 'a task ID is 16 hex digits (a unique prefix will do); a name has no blanks')
  switch (act) {
    case 'show': return { kind: 'task', action: act, id: ref, json: given('json') }
    case 'log': return { kind: 'task', action: act, id: ref, follow: given('follow'), stderrOnly: given('stderrOnly') }
    default: return { kind: 'task', action: act as 'cancel' | 'wait', id: ref }
  }
}

function completionInvocation (command: Command, args: readonly unknown[], options: Record<string, unknown>): VgridInvocation {
  for (const name of Object.keys(options)) if (name !== '--') throw usage(command, `option --${kebab(name)} does not apply to vgrid completion`)
  const [shell, ...rest] = [...args.map(String), ...(options['--'] as string[] ?? [])]
  if (shell === undefined) throw usage(command, 'vgrid completion needs a shell: bash, zsh or fish')
  if (!(SHELLS as readonly string[]).includes(shell)) throw usage(command, `no completion for ${shell}`, 'vgrid completes in bash, zsh and fish')
  if (rest.length > 0) throw usage(command, `unexpected argument ${rest[0]!}`)
  return { kind: 'completion', shell: shell as Shell }
}

/** The agent's options that take a value, as typed (cac's names). */
const AGENT_VALUE_OPTIONS = ['join', 'joinFile', 'peer', 'listen', 'cpus', 'gpus', 'mem', 'cacheSize', 'keepResults', 'pool', 'label', 'maxTasks', 'nice', 'acceptFrom', 'isolation', 'guestNet', 'guestUser', 'guestShare', 'http', 'httpCert', 'httpKey']

const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

/** `--opt -5` as `--opt=-5`, for the agent's value options; `--join -` as `--join=-`. */
function joinDashValues (argv: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--') { out.push(...argv.slice(i)); break }
    const next = argv[i + 1]
    // `--join -`: the dash is stdin, not an option
    if (next !== undefined && (/^-\d/.test(next) || (next === '-' && a === '--join')) && AGENT_VALUE_OPTIONS.some((o) => a === `--${kebab(o)}`)) {
      out.push(`${a}=${next}`)
      i++
    } else {
      out.push(a)
    }
  }
  return out
}

/**
 * The agent's option values as typed: mri turns `--pool 007` into 7 and `--nice ''` into 0,
 * so `-P 007` would find no member and an empty niceness would be 0. Only options given.
 */
function rawAgentValues (argv: readonly string[]): Record<string, string[]> {
  const raw: Record<string, string[]> = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--') break
    for (const o of AGENT_VALUE_OPTIONS) {
      const flag = `--${kebab(o)}`
      let v: string | undefined
      if (a === flag && i + 1 < argv.length) v = argv[++i]
      else if (a.startsWith(`${flag}=`)) v = a.slice(flag.length + 1)
      if (v !== undefined) { (raw[o] ??= []).push(v); break }
    }
  }
  return raw
}

/** What `vgrid agent set` changes; the other agent options apply at start only. */
const AGENT_SET_OPTIONS = ['cpus', 'gpus', 'mem', 'maxTasks', 'nice', 'onlyWhenIdle', 'acceptFrom', 'pause', 'resume']

/** Options of `agent set` or `agent stop` only: a running agent's, never a start's. */
const ACTION_ONLY_OPTIONS: Record<string, string> = { pause: 'vgrid agent set', resume: 'vgrid agent set', drain: 'vgrid agent stop' }

function refuseActionOptions (command: Command, options: Record<string, unknown>): void {
  for (const name of Object.keys(options)) {
    const owner = ACTION_ONLY_OPTIONS[name]
    if (owner === undefined || options[name] === undefined) continue
    throw usage(command, `option --${name} applies to ${owner}, not to starting an agent`, `run \`${owner} --${name}\` while the agent runs`)
  }
}

function agentStopInvocation (extra: unknown[], options: Record<string, unknown>): VgridInvocation {
  const rest = [...extra, ...(options['--'] as string[] ?? [])]
  if (rest.length > 0) throw stopUsage(`unexpected argument ${String(rest[0])}`)
  for (const name of Object.keys(options)) {
    if (name === '--' || name === 'drain') continue
    throw stopUsage(`option --${kebab(name)} does not apply to vgrid agent stop`, 'agent stop takes only --drain')
  }
  const drain = options.drain === undefined ? false : [options.drain].flat().at(-1)
  if (drain !== true && drain !== false) throw stopUsage('--drain takes no value')
  if (drain === false && options.drain !== undefined) throw stopUsage('--no-drain is not an option', '`vgrid agent stop` without --drain stops at once')
  return { kind: 'agent-stop', drain }
}

function agentSetInvocation (extra: unknown[], options: Record<string, unknown>): VgridInvocation {
  const rest = [...extra, ...(options['--'] as string[] ?? [])]
  if (rest.length > 0) throw setUsage(`unexpected argument ${String(rest[0])}`)
  for (const name of ['pause', 'resume']) {
    if (options[name] !== undefined && [options[name]].flat().at(-1) !== true) throw setUsage(`--no-${name} is not an option`, '--resume undoes --pause')
  }
  for (const name of Object.keys(options)) {
    if (name === '--' || AGENT_SET_OPTIONS.includes(name)) continue
    const shown = `--${kebab(name)}`
    throw setUsage(`option ${shown} does not apply to vgrid agent set`,
      `agent set changes ${AGENT_SET_OPTIONS.map((o) => `--${kebab(o)}`).join(', ')}; the others need a restart of the agent`)
  }
  return { kind: 'agent-set', flags: agentFlags(options) }
}

function agentFlags (o: Record<string, unknown>): AgentFlags {
  // mri turns `--cpus 8` into 8 and a repeated flag into a list: a single-valued option takes
  // the last value, as most tools do.
  const one = (v: unknown): string | undefined => v === undefined ? undefined : String([v].flat().at(-1))
  const many = (v: unknown): string[] | undefined => v === undefined ? undefined : [v].flat().map(String)
  const flags: AgentFlags = {}
  const set = <K extends keyof AgentFlags>(k: K, v: AgentFlags[K] | undefined): void => { if (v !== undefined) flags[k] = v }
  set('join', one(o.join))
  set('joinFile', one(o.joinFile))
  set('peer', many(o.peer))
  set('listen', many(o.listen))
  set('cpus', one(o.cpus))
  set('gpus', one(o.gpus))
  set('mem', one(o.mem))
  set('cacheSize', one(o.cacheSize))
  set('keepResults', one(o.keepResults))
  set('pool', many(o.pool))
  set('label', many(o.label))
  set('maxTasks', one(o.maxTasks))
  set('nice', one(o.nice))
  set('acceptFrom', many(o.acceptFrom))
  set('isolation', one(o.isolation))
  set('guestNet', one(o.guestNet))
  set('guestUser', one(o.guestUser))
  set('guestShare', many(o.guestShare))
  set('http', one(o.http))
  set('httpCert', one(o.httpCert))
  set('httpKey', one(o.httpKey))
  if (o.pause !== undefined) flags.pause = [o.pause].flat().at(-1) === true
  if (o.resume !== undefined) flags.resume = [o.resume].flat().at(-1) === true
  // a flag, so mri gives a boolean (false for --no-only-when-idle), or the text of --only-when-idle=VALUE
  const idle = o.onlyWhenIdle === undefined ? undefined : [o.onlyWhenIdle].flat().at(-1)
  set('onlyWhenIdle', typeof idle === 'boolean' ? idle : idle === undefined ? undefined : String(idle))
  return flags
}

/**
 * The agent's configuration from its flags, the environment and $VGRID_HOME/config. Called
 * before the agent (and libp2p) is loaded, so a typo fails in milliseconds, with usage.
 */
export async function agentConfig (flags: AgentFlags, env: NodeJS.ProcessEnv = process.env): Promise<AgentConfig> {
  const [{ resolveAgentConfig }, { VgridError }] = await Promise.all([import('../agent/config.js'), import('../common/errors.js')])
  try {
    const config = resolveAgentConfig(flags, env)
    // A token with a typo is refused here, in milliseconds, not after the agent started.
    if (config.join !== undefined) {
      const { decodeJoinToken } = await import('../grid/join-token.js')
      decodeJoinToken(config.join)
    }
    return config
  } catch (err) {
    if (err instanceof VgridError && (err.code === 'ERR_BAD_ARGUMENT' || err.code === 'ERR_BAD_TOKEN')) throw usage('agent', err.message, err.hint)
    throw err
  }
}

/** `vgrid agent set`'s flags as the patch sent to the agent; a bad value is a usage error. */
export async function agentSetPatch (flags: AgentFlags): Promise<PolicyPatch> {
  const [{ policyPatch }, { VgridError }] = await Promise.all([import('../agent/config.js'), import('../common/errors.js')])
  try {
    return policyPatch(flags)
  } catch (err) {
    if (err instanceof VgridError && err.code === 'ERR_BAD_ARGUMENT') throw setUsage(err.message, err.hint)
    throw err
  }
}

/** A mistake in `vgrid agent set`: its own usage, not that of starting an agent. */
function setUsage (message: string, hint?: string): UsageError {
  return new UsageError(message, hint, { usage: 'usage: vgrid agent set [--cpus N|all] [--gpus LIST] [--mem SIZE|all] [--max-tasks N|unlimited] [--nice N] [--only-when-idle | --no-only-when-idle] [--accept-from WHO|all] [--pause | --resume]; see vgrid agent --help' })
}

function stopUsage (message: string, hint?: string): UsageError {
  return new UsageError(message, hint, { usage: 'usage: vgrid agent stop [--drain]; see vgrid agent --help' })
}

function usage (command: Command | string, message: string, hint?: string): UsageError {
  const name = typeof command === 'string' ? command : command.name
  return new UsageError(message, hint, { usage: `usage: vgrid ${name} [options]; see vgrid ${name} --help` })
}

export async function main (argv: string[] = process.argv.slice(2)): Promise<void> {
  guardStdio()
  let code: number
  try {
    code = await run(parseVgridArgs(argv))
  } catch (err) {
    // Errors are printed and mapped to exit codes by output.js, loaded only when one happens.
    const { exitCodeFor, formatUsageError, printError } = await import('./output.js')
    if (err instanceof UsageError) {
      process.stderr.write(formatUsageError('vgrid', err, err.showHelp ? captureHelp(createVgridCli()) : '', VGRID_USAGE))
    } else {
      printError('vgrid', err)
    }
    code = exitCodeFor(err)
  }
  await exitAfterFlush(code)
}

/** Runs an invocation; resolves with the exit status. `agent` does not return. */
export async function run (inv: VgridInvocation): Promise<number> {
  switch (inv.kind) {
    case 'help':
    case 'version':
      process.stdout.write(inv.text)
      return 0
    case 'agent': {
      const { readJoinFromStdin } = await import('./agent-join.js')
      const flags = await readJoinFromStdin(inv.flags, process.stdin, (s) => { process.stderr.write(s) })
      const config = await agentConfig(flags)
      // Read: no command the agent starts inherits the grid's secret.
      delete process.env.VGRID_JOIN_TOKEN
      // Before libp2p loads: an install without vgrid's fixes to it must not run.
      const [{ assertPatchesApplied }, { PACKAGE_ROOT }, path] = await Promise.all([import('../agent/patches.js'), import('../common/version.js'), import('node:path')])
      assertPatchesApplied({ patchesDir: path.join(PACKAGE_ROOT, 'patches'), from: PACKAGE_ROOT })
      const [{ runAgent }, { resolveAgentConfig }] = await Promise.all([import('../agent/main.js'), import('../agent/config.js')])
      // A reload (SIGHUP) reads the policy again, and keeps the token read at start.
      return await runAgent(config, () => resolveAgentConfig(config.join !== undefined ? { ...flags, join: config.join, joinFile: undefined } : flags, process.env))
    }
    case 'agent-stop': {
      const { runAgentStop } = await import('./vgrid-agent-stop.js')
      return await runAgentStop(inv.drain, { env: process.env, stdout: process.stdout })
    }
    case 'agent-set': {
      const patch = await agentSetPatch(inv.flags)
      const { runAgentSet } = await import('./vgrid-agent-set.js')
      return await runAgentSet(patch, process.env, process.stdout)
    }
    case 'service': {
      const [{ readJoinFromStdin }, { resolveJoinToken }, { runService }, { VgridError }] = await Promise.all([
        import('./agent-join.js'), import('../agent/config.js'), import('./vgrid-service.js'), import('../common/errors.js')])
      let join: string | undefined
      try {
        const flags = await readJoinFromStdin({ ...(inv.join !== undefined ? { join: inv.join } : {}), ...(inv.joinFile !== undefined ? { joinFile: inv.joinFile } : {}) }, process.stdin, (s) => { process.stderr.write(s) })
        join = inv.action === 'install' ? resolveJoinToken(flags, process.env) : undefined
        if (join !== undefined) (await import('../grid/join-token.js')).decodeJoinToken(join)
      } catch (err) {
        if (err instanceof VgridError && (err.code === 'ERR_BAD_ARGUMENT' || err.code === 'ERR_BAD_TOKEN')) throw usage('service', err.message, err.hint)
        throw err
      }
      return await runService({ kind: 'service', action: inv.action, system: inv.system, print: inv.print, ...(join !== undefined ? { join } : {}), ...(inv.guestUser !== undefined ? { guestUser: inv.guestUser } : {}) }, { env: process.env, stdout: process.stdout })
    }
    case 'ui': {
      const { runUi } = await import('./vgrid-ui.js')
      return await runUi(inv.urlOnly, { env: process.env, stdout: process.stdout })
    }
    case 'completion': {
      const { completionScript } = await import('./completion.js')
      process.stdout.write(completionScript(inv.shell, createVgridCli()))
      return 0
    }
    case 'task': {
      const { runTaskCommand } = await import('./vgrid-task.js')
      return await runTaskCommand(inv, { env: process.env, stdout: process.stdout, stderr: process.stderr })
    }
    default: {
      const { runQuery } = await import('./vgrid-query.js')
      return await runQuery(inv, process.env, process.stdout)
    }
  }
}
