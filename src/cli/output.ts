/**
 * Everything a user of `vgrid`, `vrun` and `vbatch` reads is shaped here: error lines, the one
 * table of exit codes, and the renderings of `vgrid peers` and `vgrid status` (those of tasks
 * are in task-output.ts). Keeping it in one place keeps the wording stable (scripts and tests
 * match on it) and keeps I/O out of the commands.
 *
 * `--json` output is a contract with scripts: `{ "peers": PeerView[] }` and
 * `{ "status": AgentStatus }` (src/grid/types.ts), exactly as the agent sent them, pretty
 * printed with two spaces and a final newline. New fields may appear; none are renamed.
 */
import { VgridError } from '../common/errors.js'
import { formatBytes } from '../common/units.js'
import { shortPeerId } from '../common/peer-id.js'
import type { AgentStatus, PeerView } from '../grid/types.js'
import { UsageError } from './usage-error.js'
import { joinLine } from '../common/join-line.js'

export type Prog = 'vgrid' | 'vrun' | 'vbatch'

/** A command line the user must fix. */
export const EXIT_USAGE = 2
/**
 * The grid or the agent failed (no agent, no capacity, a lost peer), as opposed to the
 * command. Like ssh's 255, it is out of the range a command normally uses, so scripts can
 * tell "did not run" from "ran and failed". vgrid uses it too, and `vgrid agent` exits with
 * it when the agent cannot start.
 */
export const EXIT_GRID_FAILURE = 255
/** vrun: our stdout was closed (`vrun cmd | head`); a local command would die of SIGPIPE (13). */
export const EXIT_BROKEN_PIPE = 128 + 13

/**
 * vrun --after NAME: a dependency did not end as required, so the command never ran
 * (as `vgrid task wait` on such a task; tasks/types.ts EXIT_UPSTREAM_FAILED).
 */
export const EXIT_UPSTREAM_FAILED = 254

/**
 * The one place where an error becomes an exit status (README, "Exit statuses"). A task
 * name, id prefix or member that means several equally is the command line's to fix (give
 * an id), as a usage error is.
 */
export function exitCodeFor (err: unknown): number {
  if (err instanceof UsageError) return EXIT_USAGE
  if (err instanceof VgridError) {
    if (err.code === 'ERR_AMBIGUOUS_TASK' || err.code === 'ERR_AMBIGUOUS_PEER') return EXIT_USAGE
    if (err.code === 'ERR_UPSTREAM_FAILED') return EXIT_UPSTREAM_FAILED
  }
  return EXIT_GRID_FAILURE
}

/** `prog: message` and, when there is one, `hint: …` on the next line. */
export function formatError (prog: Prog, err: unknown, env: NodeJS.ProcessEnv = process.env): string {
  let text: string
  let hint: string | undefined
  if (err instanceof VgridError || err instanceof UsageError) {
    text = err.message
    hint = err.hint
  } else if (err instanceof Error) {
    // Not one of ours: a bug. Say so, and give the stack to whoever asks for it.
    text = `internal error: ${err.message}`
    hint = (env.DEBUG ?? '') !== '' ? err.stack : 'run again with DEBUG=vgrid:* for details, and report it'
  } else {
    text = `internal error: ${String(err)}`
  }
  return `${prog}: ${text}\n${hint === undefined ? '' : `hint: ${hint}\n`}`
}

/** A usage error: the error, then the whole help or the usage line. */
export function formatUsageError (prog: Prog, err: UsageError, help: string, usageLine: string): string {
  return formatError(prog, err) + (err.showHelp ? `\n${help}` : `${err.usage ?? usageLine}\n`)
}

export function printError (prog: Prog, err: unknown, stderr: NodeJS.WritableStream = process.stderr): void {
  stderr.write(formatError(prog, err))
}

/** A line of our own among the command's output: `vrun: running on host1 (12D3KooWAbCd)`. */
export function formatNotice (prog: Prog, text: string): string {
  return `${prog}: ${text}\n`
}

/** The stable JSON forms; see the header of this file. */
export function peersJson (peers: PeerView[]): string {
  return `${JSON.stringify({ peers }, null, 2)}\n`
}

export function statusJson (status: AgentStatus): string {
  return `${JSON.stringify({ status }, null, 2)}\n`
}

export { shortPeerId }

/**
 * A member as people tell it apart: its host name, and, where another member has the same
 * one (clones of one VM image, say), the shortest unique end of its peer id too.
 */
export function memberName (peer: Pick<PeerView, 'peer' | 'resources'>, peers: ReadonlyArray<Pick<PeerView, 'peer' | 'resources'>>): string {
  const host = peer.resources?.host
  const short = shortPeerId(peer.peer, peers.map((p) => p.peer))
  if (host === undefined || host === '') return short
  return peers.some((p) => p.peer !== peer.peer && p.resources?.host === host) ? `${host} (${short})` : host
}

/** A member not heard from for less than this is shown as seen `now`. */
const SEEN_NOW_MS = 2_000

export function formatSeen (ms: number): string {
  if (!Number.isFinite(ms) || ms < SEEN_NOW_MS) return 'now'
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.floor(s / 60)}m ago`
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`
  return `${Math.floor(s / 86400)}d ago`
}

/** `NVIDIA A100-SXM4-80GB` → `A100-SXM4-80GB`: the vendor adds nothing in a column named GPUS. */
function shortModel (model: string): string {
  return model.replace(/^(NVIDIA|AMD|Intel)\s+/i, '').trim() || 'GPU'
}

/** Lent GPUs grouped by model: `2×A100-SXM4-80GB (1 free)`, several models joined by `, `. */
export function formatGpus (peer: Pick<PeerView, 'resources' | 'offer' | 'load'>): string {
  const lent = new Set(peer.offer?.gpus ?? [])
  const free = new Set(peer.load?.gpusFree ?? [])
  const groups = new Map<string, { count: number, free: number }>()
  for (const g of peer.resources?.gpus ?? []) {
    if (!lent.has(g.index)) continue
    const model = shortModel(g.model ?? '')
    const group = groups.get(model) ?? { count: 0, free: 0 }
    group.count++
    if (free.has(g.index)) group.free++
    groups.set(model, group)
  }
  if (groups.size === 0) return '-'
  return [...groups].map(([model, g]) => `${g.count}×${model} (${g.free} free)`).join(', ')
}

function formatTasks (peer: PeerView): string {
  const running = peer.load?.running ?? 0
  const queued = peer.load?.queued ?? 0
  return queued > 0 ? `${running} (+${queued} queued)` : String(running)
}

const PEER_COLUMNS = ['PEER', 'HOST', 'STATE', 'LOAD', 'CPUS', 'MEM', 'GPUS', 'TASKS', 'POOLS', 'LABELS', 'SEEN'] as const

/** Whether it takes new commands now, in a word: what placement sees of it. */
function lendingState (p: PeerView): string {
  if (p.leaving === true) return 'leaving'
  if (p.load?.draining === true) return 'draining'
  if (p.load?.paused === true) return 'paused'
  if (p.load?.ownerBusy === true) return 'owner-busy'
  return 'lends'
}

/**
 * The `vgrid peers` table: this agent first (its id marked `*`), then by host. Peer ids by
 * the shortest end that tells them apart. STATE: lends, paused (by its owner), draining
 * (stopping), owner-busy (--only-when-idle and its owner works), leaving. LOAD: the
 * machine's CPU use, every process counted. CPUS and MEM are free/lent: what the owner
 * shares, not what the machine has.
 */
export function renderPeersTable (peers: PeerView[]): string {
  const sorted = [...peers].sort((a, b) =>
    Number(b.self) - Number(a.self) || String(a.resources?.host).localeCompare(String(b.resources?.host)) || a.peer.localeCompare(b.peer))
  const ids = peers.map((p) => p.peer)
  const rows = sorted.map((p) => [
    `${shortPeerId(p.peer, ids)}${p.self ? '*' : ''}`,
    p.resources?.host ?? '?',
    lendingState(p),
    typeof p.load?.cpuUtil === 'number' ? `${Math.round(p.load.cpuUtil)}%` : '?',
    `${p.load?.cpusFree ?? '?'}/${p.offer?.cpus ?? '?'}`,
    `${formatBytes(p.load?.memFree ?? 0)}/${formatBytes(p.offer?.memBytes ?? 0)}`,
    formatGpus(p),
    formatTasks(p),
    (p.offer?.pools ?? []).join(',') || '-',
    Object.entries(p.offer?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '-',
    p.leaving === true ? 'leaving' : p.self ? 'now' : formatSeen(p.lastSeenMs)
  ])
  const lines = renderTable([PEER_COLUMNS as readonly string[], ...rows])
  const footer = peers.length === 1 ? '1 member; * = this agent' : `${peers.length} members; * = this agent`
  const gpus = renderGpuUse(sorted)
  return `${lines}${footer}\n${renderLending(sorted)}${renderAcceptFrom(sorted)}${renderIsolation(sorted)}${gpus === '' ? '' : `\n${gpus}`}`
}

/** One line per member that takes no new command now: paused, or draining before it stops. */
function renderLending (peers: PeerView[]): string {
  return peers.map((p) => {
    const who = memberName(p, peers)
    const running = p.load?.running ?? 0
    if (p.load?.draining === true) return `${who} is draining: it takes no new command and stops once its ${running} running ${running === 1 ? 'command has' : 'commands have'} ended\n`
    if (p.load?.paused === true) return `${who} is paused by its owner: it takes no new command (${running} running go on)\n`
    if (p.load?.ownerBusy === true) return `${who} lends only when its owner is idle (--only-when-idle), and its owner is busy: it takes no new command\n`
    return ''
  }).join('')
}

/** One line per member whose owner limits who may run commands there (`--accept-from`). */
function renderAcceptFrom (peers: PeerView[]): string {
  const name = (id: string): string => {
    const p = peers.find((x) => x.peer === id)
    return p !== undefined ? memberName(p, peers) : shortPeerId(id, peers.map((x) => x.peer))
  }
  return peers.filter((p) => Array.isArray(p.offer?.acceptFrom)).map((p) => {
    const from = p.offer.acceptFrom!
    return `${memberName(p, peers)} runs commands only from ${from.length === 0 ? 'no other member' : from.map(name).join(', ')}\n`
  }).join('')
}

/** One line per member whose guests are not sandboxed: by its owner's choice, or because it cannot. */
function renderIsolation (peers: PeerView[]): string {
  return peers.map((p) => {
    const who = `${p.resources?.host ?? '?'} (${shortPeerId(p.peer, peers.map((x) => x.peer))})`
    if (p.offer?.isolation === 'none') return `${who} runs guests unconfined, as its owner's user (--isolation none)\n`
    if (p.offer?.isolation === 'unavailable') return `${who} lends nothing: it cannot sandbox guests (no working bubblewrap)\n`
    return ''
  }).join('')
}

/**
 * Every GPU the grid lends, one line each, like gpustat for the whole grid: free, or which
 * task holds it for whom. Empty when no member lends a GPU. A member is named by its host,
 * with the end of its peer id where two members share a host name.
 */
export function renderGpuUse (peers: PeerView[]): string {
  const rows: string[][] = []
  for (const p of peers) {
    const lent = new Set(p.offer?.gpus ?? [])
    const free = new Set(p.load?.gpusFree ?? [])
    const use = new Map((p.load?.gpuUse ?? []).map((u) => [u.index, u]))
    for (const g of p.resources?.gpus ?? []) {
      if (!lent.has(g.index)) continue
      const u = use.get(g.index)
      rows.push([
        `${memberName(p, peers)} [${g.index}]`, shortModel(g.model ?? ''), formatBytes(g.memoryBytes ?? 0),
        free.has(g.index) ? 'free' : u?.task ?? 'busy', free.has(g.index) ? '' : u?.who ?? ''
      ])
    }
  }
  return rows.length === 0 ? '' : renderTable([['GPU', 'MODEL', 'MEMORY', 'TASK', 'FOR'], ...rows])
}

/**
 * A cell as it may reach a terminal: control characters (C0, DEL, C1) become `?`, so a name a
 * peer advertised (a host, a GPU model, for whom a GPU runs) cannot carry escape sequences.
 */
export function printable (s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?')
}

/** Left-aligned columns separated by two spaces, no trailing blanks; cells made printable. */
export function renderTable (table: ReadonlyArray<readonly string[]>): string {
  const rows = table.map((row) => row.map(printable))
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, cell.length) })
  return rows.map((row) => row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i]!)).join('  ').trimEnd() + '\n').join('')
}

/** How to add a machine; the same line the agent prints when it starts. */
export { joinLine }

export function renderStatus (s: AgentStatus, now = Date.now()): string {
  const addrs = s.addrs ?? []
  const up = Number.isFinite(s.startedAt) ? `${new Date(s.startedAt).toISOString()} (${formatDuration(now - s.startedAt)} ago)` : '?'
  const rows: Array<[string, string]> = [
    ...(s.unreachable !== undefined ? [['warning', s.unreachable] as [string, string]] : []),
    ['peer id', s.peer],
    ['host', s.host],
    ['version', s.version],
    ['home', s.home],
    ...(addrs.length === 0 ? [['addresses', '-'] as [string, string]] : addrs.map((a, i): [string, string] => [i === 0 ? 'addresses' : '', a])),
    ['grid size', `${s.gridSize} ${s.gridSize === 1 ? 'member' : 'members'}`],
    ['connections', String(s.connections)],
    ['started', up],
    ...(s.http !== undefined ? [['http', `${s.http}  (vgrid ui opens the dashboard)`] as [string, string]] : []),
    ...(s.guests !== undefined ? [['guests', s.guests] as [string, string]] : []),
    ...(s.memory !== undefined ? [['guest memory', s.memory] as [string, string]] : []),
    ...lendingRows(s),
    ...(s.usage !== undefined ? [['agent memory', `${formatBytes(s.usage.rssBytes)} resident, ${formatBytes(s.usage.heapUsedBytes)} of JavaScript heap in use`] as [string, string]] : [])
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}\n`).join('') +
    (s.joinToken === '' ? '' : '\nTo add another machine to this grid, run there:\n' + `  ${joinLine(s.joinToken)}\n`)
}

/** `lending` and `running`, from agents that report them. */
function lendingRows (s: AgentStatus): Array<[string, string]> {
  const rows: Array<[string, string]> = []
  if (s.lending === 'paused') rows.push(['lending', 'paused: no new command (vgrid agent set --resume lends again)'])
  else if (s.lending === 'draining') rows.push(['lending', 'draining: no new command; the agent stops once nothing runs here'])
  else if (s.lending === 'yes') rows.push(['lending', 'yes'])
  if (s.running !== undefined) {
    const { guests, others } = s.running
    rows.push(['running', `${guests} guest command${guests === 1 ? '' : 's'}${others > 0 ? `, ${others} other${others === 1 ? '' : 's'}` : ''}`])
  }
  return rows
}

export function formatDuration (ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor(s % 3600 / 60)}m`
  return `${Math.floor(s / 86400)}d ${Math.floor(s % 86400 / 3600)}h`
}
