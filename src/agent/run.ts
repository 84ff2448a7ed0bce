/**
 * One `vrun`, from both ends. The submitting agent picks a member (placement.ts), asks it to
 * reserve and run the command, and relays events down to the CLI and inputs up to the
 * executor; a member that refuses (its advertisement was stale) is skipped for the next one.
 * The executing agent checks its ledger, brings its copy of the workspace up to date (or,
 * with --no-sync, makes a scratch directory), runs the command there, offers back what it
 * changed, and releases what it reserved however the command ends. On the submitter's own
 * machine the command runs in the workspace itself: nothing to sync.
 */
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { PACKAGE_ROOT } from '../common/version.js'
import { VgridError, clipText, fromWire, toWire, type WireError } from '../common/errors.js'
import type { FrameChannel } from '../common/channel.js'
import { obj, int, str, bytes, bad } from '../common/validate.js'
import { createLogger } from '../common/log.js'
import { withTimeout } from '../common/timeout.js'
import { parseRunSpec, parseExecEvent, parseExecInput, serveExec, describeExit, type RunSpec, type ExecEvent, type Ledger } from '../exec/index.js'
import { acceptsFrom, candidates, resolvePinned, chooseClaimTargets, hasRoomFor, noRoom, CLAIM_FANOUT, MemberAway } from '../grid/placement.js'
import type { Grid, GpuInfo, GpuUse, PeerView } from '../grid/index.js'
import { removeTree, type WorkspaceRef, type SyncCopyResult } from '../fs-sync/index.js'
import type { WorkspaceSync, WorkspaceScan } from './workspace-sync.js'
import type { GroupLedger } from '../exec/orphans.js'
import type { GuestRun, GuestRuns } from './guest-run.js'
import type { HeldRun, HeldRuns } from './held.js'
import { claimFirst, holdClaim, ClaimReleased, Refusals, GANG_NOT_PLACED, type GangSeat } from './claim.js'
import { RunQueue, requestShape, type QueueTicket } from './run-queue.js'
import { linkedSignal } from '../common/abort.js'
import { EXEC_PROTOCOL, EXEC_PROTOCOL_VERSION, EXEC_REQUEST_TIMEOUT_MS, MAX_PLACEMENT_ATTEMPTS, QUEUE_RETRY_MS, SHUTDOWN_KILL_GRACE_MS } from './constants.js'

const log = createLogger('run')
const TASK_ID_RE = /^[0-9a-f]{16}$/

export interface RunContext {
  home: string
  grid: Grid
  ledger: Ledger
  host: string
  /** All GPUs of the machine, to know whether it has any. */
  gpus: GpuInfo[]
  /** Aborted when the agent stops: running commands are killed. */
  shutdown: AbortSignal
  /** Tells the grid the load changed. */
  loadChanged: () => void
  sync: WorkspaceSync
  /** Sub-tasks submitted from inside commands running here (tasks/manager.ts). */
  children?: ChildTracker
  /** Where running commands' process groups are written down (exec/orphans.ts). */
  groups?: GroupLedger
  /** Wraps the session of every command run here (the owner policy watches them: guests.ts). */
  watch?: (channel: FrameChannel) => FrameChannel
  /** Who holds each GPU of this machine now, by index (advertised for `vgrid peers`). */
  gpuUse?: Map<number, GpuUse>
  /** When this agent started (ms since the epoch): its view is still forming for a while. */
  startedAt?: number
  /** Homes, sockets and sandboxes of guest commands (guest-run.ts); without it guests run as the owner's own. */
  guests?: GuestRuns
  /** Told of every guest's process group: kills them if this agent freezes (watchdog.ts). */
  watchdog?: { add: (pgid: number) => void, remove: (pgid: number) => void }
  /** Tasks of other members whose attempt runs here now: a second attempt waits until the first has ended. */
  attempts?: Set<string>
  /**
   * Why a command sent by `peer` may not run here (the owner's `--accept-from`), or
   * undefined when it may. Asked for every exec request, with the peer id its connection
   * authenticated; this agent's own runs are never asked about.
   */
  guestRefusal?: (peer: string) => string | undefined
  /** Detached runs of other members' tasks: they outlive their owner's stream (held.ts). */
  held?: HeldRuns
}

/** The OS user this agent runs as: for whom its commands run, as other members show it. */
export const USER = ((): string => {
  try {
    return os.userInfo().username.slice(0, 64)
  } catch {
    return 'unknown'
  }
})()

/** Another member's run here: who sent it. */
export interface Guest {
  /** The submitting member's peer id, from the libp2p connection (authenticated). */
  peer: string
  /** `user@host`, as that member states it. */
  who: string
}

/** What the executor needs of the task system for a command that submits sub-tasks. */
export interface ChildTracker {
  /**
   * The command of `task` starts here: sub-tasks naming it as parent attach to it. `guest`:
   * the member that sent it, when it is not this agent's own.
   */
  begin: (task: string, guest?: Guest) => {
    /** After the command ended: tells the submitter, waits for every sub-task to end. */
    settle: (send: (ev: ExecEvent) => Promise<void>) => Promise<void>
    /** Cancels the sub-tasks (the task itself is being cancelled). */
    cancel: () => void
    /** The run is over here, however it ended. */
    end: () => void
  }
}

/** What the submitter exported for the executor to pull, and where its user has it (the guest sees it there). */
interface WorkspaceOffer { session: string, root: Uint8Array, key: string, path?: string }

/** `detach`: a task that lives on without its owner's stream (held.ts), not a vrun. */
interface ExecRequest { t: 'exec', v: number, task: string, spec: RunSpec, ws?: WorkspaceOffer, user?: string, detach?: boolean }
/** The owner is back for a detached run: `have` is how many bytes of its output it has logged. */
interface AttachRequest { t: 'attach', v: number, task: string, have: number }

/** Where a command runs on the executing machine. */
type RunDir =
  | { kind: 'scratch' }
  /** `mount`: where the command sees it, when not at `dir` (a guest's sub-task in the guest's copy). */
  | { kind: 'dir', dir: string, mount?: string }
  | { kind: 'copy', submitter: string, offer: WorkspaceOffer }

function parseExecRequest (v: unknown): ExecRequest | AttachRequest {
  const m = obj(v, 'exec request')
  if (m.t !== 'exec' && m.t !== 'attach') bad('expected an exec request')
  const ver = int(m.v, 'v', 0, 2 ** 31)
  if (ver !== EXEC_PROTOCOL_VERSION) throw new VgridError('ERR_AGENT_VERSION', `the executor speaks exec protocol ${EXEC_PROTOCOL_VERSION}, the submitter ${ver}`)
  const task = str(m.task, 'task', 16)
  if (!TASK_ID_RE.test(task)) bad('task is not a task id')
  if (m.t === 'attach') return { t: 'attach', v: ver, task, have: int(m.have, 'have', 0, Number.MAX_SAFE_INTEGER) }
  const req: ExecRequest = { t: 'exec', v: ver, task, spec: parseRunSpec(m.spec) }
  if (m.detach === true) req.detach = true
  if (m.user !== undefined && m.user !== null) {
    const user = str(m.user, 'user', 64)
    if (!/^[\w.-]+$/.test(user)) bad('user is not a user name')
    req.user = user
  }
  if (m.ws !== undefined && m.ws !== null) {
    const w = obj(m.ws, 'ws')
    const session = str(w.session, 'ws.session', 32)
    const key = str(w.key, 'ws.key', 32)
    if (!/^[0-9a-f]{32}$/.test(session) || !/^[0-9a-f]{32}$/.test(key)) bad('ws is not a workspace offer')
    const root = bytes(w.root, 'ws.root', 32)
    if (root.byteLength !== 32) bad('ws.root is not a 32-byte hash')
    req.ws = { session, root, key }
    if (w.path !== undefined && w.path !== null) req.ws.path = workspacePath(w.path)
  }
  return req
}

/** The submitter's absolute workspace path: normalized, no NUL, not the root. */
function workspacePath (v: unknown): string {
  const p = str(v, 'ws.path', 4096)
  if (!path.isAbsolute(p) || p.includes('\0') || path.normalize(p) !== p || p === '/' || p.endsWith('/')) bad('ws.path is not an absolute, normalized path')
  return p
}

/**
 * A view of the channel that keeps the command's `exit` back (sub-tasks must end, and with a
 * synced workspace the outputs must reach the submitter, before it is told the command is
 * over), and takes a `cancel` input out of the stream for `onCancel`.
 */
function holdingExit (channel: FrameChannel, onCancel: () => void): { channel: FrameChannel, held: () => ExecEvent | undefined } {
  let held: ExecEvent | undefined
  const view: FrameChannel = {
    get closed () { return channel.closed },
    send: async (msg) => {
      if ((msg as ExecEvent).t === 'exit') { held = msg as ExecEvent; return }
      await channel.send(msg)
    },
    recv: async () => {
      for (;;) {
        const raw = await channel.recv()
        if (raw === null || typeof raw !== 'object' || (raw as { t?: unknown }).t !== 'cancel') return raw
        onCancel()
      }
    },
    close: async () => { await channel.close() },
    destroy: (err) => { channel.destroy(err) }
  }
  return { channel: view, held: () => held }
}

/** `cwd` from a peer: relative, inside the directory, no `..`, no NUL. */
function safeCwd (root: string, cwd: string | undefined): string {
  if (cwd === undefined || cwd === '' || cwd === '.') return root
  if (cwd.includes('\0') || path.isAbsolute(cwd) || cwd.split(/[\\/]/).includes('..')) {
    throw new VgridError('ERR_BAD_ARGUMENT', `the working directory ${JSON.stringify(cwd)} is not a relative path inside the workspace`)
  }
  return path.join(root, cwd)
}

/**
 * Creates the working directory `cwd` under `root` one component at a time, refusing to pass
 * through a symlink: a workspace from a peer may hold `esc -> /elsewhere`, and `mkdir -p
 * root/esc/created` would then create directories (and run the command) outside it.
 */
export async function makeCwd (root: string, cwd: string): Promise<void> {
  // the root is the agent's own (a scratch directory, a copy, the local workspace)
  await fs.mkdir(root, { recursive: true })
  const rel = path.relative(root, cwd)
  let dir = root
  for (const part of rel === '' ? [] : rel.split(path.sep)) {
    dir = path.join(dir, part)
    const st = await fs.lstat(dir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err })
    if (st === undefined) {
      await fs.mkdir(dir).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err })
      continue
    }
    if (st.isSymbolicLink()) {
      throw new VgridError('ERR_BAD_ARGUMENT', `the working directory ${JSON.stringify(rel)} passes through the symlink ${JSON.stringify(path.relative(root, dir))}`,
        'run the command from a real directory of the workspace')
    }
    if (!st.isDirectory()) throw new VgridError('ERR_BAD_ARGUMENT', `the working directory ${JSON.stringify(rel)}: ${JSON.stringify(path.relative(root, dir))} is not a directory`)
  }
}

/** The package's commands, by the names a script calls them: `$VGRID_HOME/bin` goes first on a task's PATH. */
export async function linkCommands (home: string): Promise<void> {
  const dir = path.join(home, 'bin')
  await fs.mkdir(dir, { recursive: true })
  const from = path.join(PACKAGE_ROOT, 'bin')
  for (const name of ['vgrid', 'vrun', 'vbatch']) {
    const link = path.join(dir, name)
    await fs.rm(link, { force: true })
    await fs.symlink(path.join(from, `${name}.js`), link)
  }
}

export function newTaskId (): string {
  return randomBytes(8).toString('hex')
}

let envCopy: Readonly<Record<string, string>> | undefined

/**
 * The agent's own shell state, which says nothing about a command: where the agent was
 * started (PWD, OLDPWD; a command gets PWD = its own directory, as a shell would give it), the
 * last program its shell ran (_), and the terminal it was started from (TERM: a command gets
 * the user's under a terminal, and none on pipes, as over ssh).
 */
const AGENT_ONLY_VARS: ReadonlySet<string> = new Set(['PWD', 'OLDPWD', '_', 'TERM'])

/**
 * The agent's environment, the base of every command's: copied once, as reading process.env
 * goes through the C library for each variable, on every command started.
 */
function agentEnv (): Readonly<Record<string, string>> {
  if (envCopy === undefined) {
    const env: Record<string, string> = {}
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !AGENT_ONLY_VARS.has(k)) env[k] = v
    envCopy = Object.freeze(env)
  }
  return envCopy
}

/** Runs a command on this machine against a reservation; `channel` carries its session. */
export interface ExecuteOptions {
  /** Called once the reservation is held, before any work. */
  onAccepted?: () => Promise<void>
  /** Another member's run: who sent it. Its task id is that member's to keep. */
  remote?: Guest
  /** A guest's command although submitted here: a sub-task of a guest task. */
  guest?: boolean
  /** A detached run: `channel` is its HeldRun, and its outputs wait for an owner that is away. */
  held?: HeldRun
}

export async function executeHere (ctx: RunContext, channel: FrameChannel, task: string, spec: RunSpec, where: RunDir, opts: ExecuteOptions = {}): Promise<void> {
  const { remote } = opts
  const who = remote?.who ?? `${USER}@${ctx.host}`
  // Another member's command, or one a guest submitted: contained (guest-run.ts).
  const isGuest = remote !== undefined || opts.guest === true
  if (remote !== undefined && ctx.attempts !== undefined) {
    // The submitter took an attempt here for lost (this agent was frozen, or cut off) while
    // it still ends: the two must never run at once.
    if (ctx.attempts.has(task)) throw new VgridError('ERR_NO_CAPACITY', `an earlier attempt of task ${task} is still ending on ${ctx.host}`, 'it is placed again once that one is over')
    ctx.attempts.add(task)
  }
  try {
    await executeAttempt(ctx, channel, task, spec, where, opts, who, isGuest)
  } finally {
    if (remote !== undefined) ctx.attempts?.delete(task)
  }
}

async function executeAttempt (ctx: RunContext, channel: FrameChannel, task: string, spec: RunSpec, where: RunDir, opts: ExecuteOptions, who: string, isGuest: boolean): Promise<void> {
  const { onAccepted, remote } = opts
  channel = ctx.watch?.(channel) ?? channel
  // RunSpec is a ResourceRequest (common/resources.ts): what the ledger reserves.
  const reservation = ctx.ledger.reserve(spec)
  for (const g of reservation.gpus) ctx.gpuUse?.set(g.index, { index: g.index, task, who })
  ctx.loadChanged()
  const scratch = path.join(ctx.home, 'scratch', task)
  let copy: { dir: string, release: () => void } | undefined
  let kids: ReturnType<ChildTracker['begin']> | undefined
  let guest: GuestRun | undefined
  // Set from the claim's go until the command is started: what fails then is this member's refusal.
  let preparing = false
  try {
    await onAccepted?.()
    preparing = remote !== undefined
    let root: string
    if (where.kind === 'dir') {
      root = where.dir
    } else if (where.kind === 'copy') {
      copy = await ctx.sync.acquireCopy(where.submitter, where.offer.key)
      root = copy.dir
    } else {
      root = scratch
    }
    const cwd = safeCwd(root, spec.cwd)
    const send = async (ev: ExecEvent): Promise<void> => { await channel.send(ev) }
    const synced = where.kind === 'copy' ? await ctx.sync.pullCopy(root, where.submitter, where.offer, send, ctx.shutdown) : undefined
    await makeCwd(root, cwd)
    let env: Record<string, string>
    if (isGuest && ctx.guests !== undefined) {
      // Its own home and socket, and unless the owner chose otherwise, a sandbox.
      const mount = where.kind === 'copy' ? where.offer.path ?? root : where.kind === 'dir' ? where.mount ?? where.dir : undefined
      guest = await ctx.guests.open({ task, root, cwd, ...(mount !== undefined ? { mount } : {}), gpus: reservation.gpus, cpus: reservation.cpus, agentEnv: agentEnv() })
      env = guest.env
    } else {
      // vrun and vbatch inside the command reach this agent and become the task's sub-tasks.
      env = { ...agentEnv(), VGRID_TASK_ID: task, VGRID_HOME: ctx.home, VGRID_WORKSPACE: root, PWD: cwd }
      env.PATH = [path.join(ctx.home, 'bin'), env.PATH].filter(Boolean).join(':')
    }
    // A guest's group is the watchdog's too: it dies if this agent freezes.
    const wd = isGuest ? ctx.watchdog : undefined
    const groups: GroupLedger | undefined = wd === undefined ? ctx.groups : {
      add: (pgid, t) => { ctx.groups?.add(pgid, t); wd.add(pgid) },
      remove: (pgid) => { wd.remove(pgid); ctx.groups?.remove(pgid) }
    }
    // Which member runs it, for the command (its home no longer tells).
    env.VGRID_PEER = ctx.grid.peerId
    const cancelled = new AbortController()
    kids = ctx.children?.begin(task, remote)
    const hold = holdingExit(channel, () => { kids?.cancel(); cancelled.abort() })
    preparing = false
    // not AbortSignal.any: it would leave an entry in the shutdown signal per run (common/abort.ts)
    const stopOn = linkedSignal([ctx.shutdown, cancelled.signal])
    const result = await serveExec(hold.channel, {
      spec, cwd, env, ...(remote === undefined ? { task } : {}), gpus: reservation.gpus, machineHasGpus: ctx.gpus.length > 0,
      peer: ctx.grid.peerId, host: ctx.host, ...(groups !== undefined ? { groups } : {}), signal: stopOn.signal, abortGraceMs: SHUTDOWN_KILL_GRACE_MS,
      ...(guest?.sandbox !== undefined ? { sandbox: guest.sandbox } : {})
    }).finally(stopOn.dispose)
    log.debug(`task ${task} ended`, result)
    if (remote !== undefined && ctx.shutdown.aborted && !cancelled.signal.aborted && result.started) {
      // Stopped because this agent stops: the command did not fail, this member went away.
      throw new VgridError('ERR_PEER_LOST', `${ctx.host} stopped while the command ran`, 'it is placed again when it has retries left')
    }
    // The command is over: its cores and GPUs are free for its sub-tasks and while outputs travel.
    ctx.ledger.release(reservation)
    ctx.loadChanged()
    const exit = hold.held()
    if (exit?.t === 'exit') {
      // Sub-tasks may run on after the command. If the submitter goes away meanwhile they
      // stop: nothing they make could reach it any more. (It has half-closed the stream long
      // ago, so only the stream's state tells: looked at once a second while they run.)
      const k = kids
      const gone = k === undefined ? undefined : setInterval(() => { if (channel.closed) { clearInterval(gone); k.cancel() } }, SUBMITTER_GONE_POLL_MS)
      try {
        await k?.settle(send)
      } finally {
        clearInterval(gone)
      }
      if (synced !== undefined && where.kind === 'copy') {
        try {
          await offerOutputs(ctx, opts.held, root, synced, { submitter: where.submitter, send, exit })
        } catch (err) {
          // The command did run: say how it ended, or the user may run it again for nothing.
          const ended = describeExit(exit)
          const e = err instanceof VgridError ? err : new VgridError('ERR_INTERNAL', (err as Error).message)
          throw new VgridError(e.code, `the command ${ended}, but its outputs could not come back: ${e.message}`, e.hint)
        }
      }
      await channel.send(exit)
    }
  } catch (err) {
    throw preparing ? refusalOf(ctx, err) : err
  } finally {
    kids?.end()
    await guest?.close()
    copy?.release()
    for (const g of reservation.gpus) if (ctx.gpuUse?.get(g.index)?.task === task) ctx.gpuUse.delete(g.index)
    ctx.ledger.release(reservation)
    ctx.loadChanged()
    // Mostly left empty: one rmdir, and the whole walk only when the command left files.
    if (where.kind === 'scratch') await fs.rmdir(scratch).catch(async () => { await removeTree(scratch) }).catch(() => {})
  }
}

/**
 * The outputs go to whoever is attached when the command has ended. A detached run whose
 * owner is away waits for it (as long as results are kept); an owner that goes away during
 * the pull gets them offered again when it is back.
 */
async function offerOutputs (ctx: RunContext, held: HeldRun | undefined, root: string, synced: SyncCopyResult, to: { submitter: string, send: (ev: ExecEvent) => Promise<void>, exit: { code: number, signal?: string } }): Promise<void> {
  if (held === undefined) { await ctx.sync.offerOutputs(root, synced, to); return }
  const acked = (taken: Promise<boolean>): Promise<boolean> => Promise.race([taken, new Promise<boolean>((resolve) => {
    // An owner that pulled but never said so (an older one): as attached as it looks.
    setTimeout(() => { resolve(held.attached) }, OUTPUTS_ACK_TIMEOUT_MS).unref()
  })])
  for (;;) {
    if (!await held.whenAttached(held.keepMs)) throw new VgridError('ERR_PEER_LOST', 'its owner did not come back for the outputs')
    if (held.closed) throw new VgridError('ERR_PEER_LOST', 'the run was dropped')
    const taken = held.outputsTaken()
    if (!await ctx.sync.offerOutputs(root, synced, { ...to, withBase: held.reattached })) return
    if (await acked(taken)) return
  }
}

/** How long the end of a run's stream may take to close gracefully once its exit is seen. */
const END_SEEN_CLOSE_MS = 2_000

/** After the pull of a detached run's outputs ended, the owner's word that it has them must come within this. */
const OUTPUTS_ACK_TIMEOUT_MS = 30_000

/** Errors that would be the same on any member: the run's own fault, not this member's. */
const NOT_A_REFUSAL: ReadonlySet<string> = new Set(['ERR_BAD_ARGUMENT', 'ERR_UNSAFE_PATH', 'ERR_WORKSPACE_TOO_LARGE', 'ERR_BAD_MESSAGE', 'ERR_NOT_ALLOWED', 'ERR_NO_CAPACITY', 'ERR_PEER_LOST', 'ERR_CHUNK_HASH_MISMATCH', 'ERR_AGENT_VERSION'])

/**
 * A failure between the claim and the command's start (no disk space, the sync, the
 * sandbox) as this member's refusal: ERR_NO_SPACE or ERR_EXECUTOR_FAILED, naming the member,
 * so the submitter places the run elsewhere without spending a retry, and says where and
 * why if none can take it. The run's own faults pass unchanged.
 */
export function refusalOf (ctx: { host: string, home: string, grid: { peerId: string } }, err: unknown): unknown {
  if (err instanceof ClaimReleased) return err
  const who = `${ctx.host} (${ctx.grid.peerId.slice(0, 12)}…)`
  const errno = (err as NodeJS.ErrnoException)?.code
  if (err instanceof VgridError && err.code === 'ERR_NO_SPACE') return new VgridError('ERR_NO_SPACE', `${who} has no space for this workspace (${err.message})`, err.hint)
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    return new VgridError('ERR_NO_SPACE', `${who} has no space for this workspace (${(err as Error).message}, in ${ctx.home})`, 'free space on that disk, or move its VGRID_HOME to a larger one')
  }
  if (err instanceof VgridError && NOT_A_REFUSAL.has(err.code)) return err
  return new VgridError('ERR_EXECUTOR_FAILED', `${who} could not prepare the command: ${err instanceof Error ? err.message : String(err)}`,
    err instanceof VgridError ? err.hint : undefined)
}

/**
 * Whether the executor's error before the start is its refusal to run: the run goes
 * elsewhere. ERR_SPAWN_FAILED is the executor's too (stopping, out of processes): a command
 * that does not exist there is an exit status (127), not an error.
 */
export function isRefusal (err: unknown): err is VgridError {
  return err instanceof VgridError && (err.code === 'ERR_NO_SPACE' || err.code === 'ERR_EXECUTOR_FAILED' || err.code === 'ERR_SPAWN_FAILED')
}

/** Serves `/vgrid/exec/1.0.0`: another member asks this one to run a command. */
export function serveExecProtocol (ctx: RunContext): (channel: FrameChannel, remotePeer: string) => Promise<void> {
  return async (channel, remotePeer) => {
    let req: ExecRequest | AttachRequest
    try {
      req = parseExecRequest(await withTimeout(channel.recv(), EXEC_REQUEST_TIMEOUT_MS, `the exec request did not arrive within ${EXEC_REQUEST_TIMEOUT_MS} ms`))
    } catch (err) {
      log.warn(`refused an exec request from ${remotePeer}`, err)
      await channel.send({ t: 'error', error: toWire(err) }).catch(() => {})
      channel.destroy()
      return
    }
    if (req.t === 'attach') {
      try {
        if (ctx.held === undefined) throw new VgridError('ERR_TASK_NOT_FOUND', `${ctx.host} keeps no detached runs`)
        // Scoped by the authenticated peer: an owner reaches only its own runs.
        await ctx.held.attach(remotePeer, req.task, channel, req.have)
      } catch (err) {
        await channel.send({ t: 'error', error: toWire(err) }).catch(() => {})
        await channel.close().catch(() => {})
      }
      return
    }
    const refused = ctx.guestRefusal?.(remotePeer)
    if (refused !== undefined) {
      log.warn(`refused task ${req.task} from ${remotePeer}: not a member this machine accepts commands from`)
      const error = new VgridError('ERR_NOT_ALLOWED', refused, `run it on another member, or ask the owner of ${ctx.host} to accept it: vgrid agent set --accept-from …`)
      await channel.send({ t: 'error', error: error.toWire() }).catch(() => {})
      await channel.close().catch(() => {})
      return
    }
    // A task (not a vrun): from its `go` on, it outlives its owner's stream (held.ts).
    const held = req.detach === true ? ctx.held?.open(remotePeer, req.task, channel) : undefined
    const session: FrameChannel = held ?? channel
    try {
      await executeHere(ctx, session, req.task, req.spec, req.ws !== undefined ? { kind: 'copy', submitter: remotePeer, offer: req.ws } : { kind: 'scratch' }, {
        onAccepted: async () => { await holdClaim(channel); held?.arm() },
        remote: { peer: remotePeer, who: `${req.user ?? 'unknown'}@${ctx.grid.view().find((p) => p.peer === remotePeer)?.resources.host ?? remotePeer.slice(-8)}` },
        ...(held !== undefined ? { held } : {})
      })
    } catch (err) {
      if (err instanceof ClaimReleased) {
        log.debug(`task ${req.task} from ${remotePeer}: ${err.message}`)
        held?.drop('its claim was released')
        return
      }
      if (!(err instanceof VgridError) || err.code !== 'ERR_NO_CAPACITY') log.warn(`task ${req.task} from ${remotePeer} failed`, err)
      if (held !== undefined && !held.began && !held.attached) {
        // Its owner went away while this member synced the workspace from it: nothing ran, nothing failed.
        err = new VgridError('ERR_PEER_LOST', `its owner went away while ${ctx.host} prepared it: ${(err as Error).message}`)
      }
      await session.send({ t: 'error', error: toWire(err) }).catch(() => {})
    } finally {
      await session.close().catch(() => {})
    }
  }
}

/**
 * Handles a `run` request from the CLI on `client` until the command ends. When every member
 * that could run it is busy, or the member named with --on left lately, the run waits (the CLI
 * is told why, again when that changes) and is placed again at the next change of the view,
 * until the CLI goes away.
 */
export interface SubmitOptions {
  on?: string
  workspace?: WorkspaceRef
  task?: string
  /** One shard of a gang: placed once, on its member. */
  gang?: GangSeat
  /** Submitted by a guest (through a task's socket): contained wherever it runs, here too. */
  guest?: boolean
  /** A task, not a vrun: on another member it outlives this agent's stream (held.ts). */
  detach?: boolean
}

export async function submitRun (ctx: RunContext, client: FrameChannel, spec: RunSpec, o: SubmitOptions = {}): Promise<void> {
  client = oneReader(client)
  const { on, workspace, gang } = o
  const task = o.task ?? newTaskId()
  const guest = o.guest === true
  if (gang !== undefined) {
    // One shard of a gang: one try, on its member; the gang as a whole is placed again.
    const getScan = workspace === undefined ? undefined : async () => await ctx.sync.scan(workspace, ctx.shutdown)
    try {
      await placeOnce(ctx, client, task, spec, { on, workspace, getScan, onPlaced: () => {}, guest, gang, detach: o.detach === true })
    } finally {
      // Placed and held, or not placed at all: either way the others need not wait for this one.
      gang.fail()
    }
    return
  }
  /** Whether the reason last told for waiting was a member away, once one was told. */
  let told: boolean | undefined
  // Scanned once, when a remote member is first tried; a local run needs no scan.
  let scan: Promise<WorkspaceScan> | undefined
  const getScan = workspace === undefined ? undefined : async () => await (scan ??= ctx.sync.scan(workspace, ctx.shutdown))
  const { queue } = placementOf(ctx)
  const shape = requestShape(spec, on)
  // A new run does not overtake older ones already waiting for the same members.
  let ticket: QueueTicket | undefined = queue.mustWait(shape) ? queue.join(shape) : undefined
  const placed = (): void => {
    if (ticket !== undefined) queue.leave(ticket)
    ticket = undefined
  }
  try {
    for (;;) {
      if (ticket === undefined || queue.mayTry(ticket)) {
        try {
          await placeOnce(ctx, client, task, spec, { on, workspace, getScan, onPlaced: placed, guest, detach: o.detach === true })
          return
        } catch (err) {
          if (!(err instanceof VgridError) || err.code !== 'ERR_NO_CAPACITY') throw err
          ticket ??= queue.join(shape)
          // Told once, and again when the member named with --on leaves or comes back (a new reason to wait).
          const away = err instanceof MemberAway
          if (told !== away) {
            told = away
            await client.send({ t: 'queued', message: err.message })
          }
        }
      }
      await wakeUp(ctx, QUEUE_RETRY_MS, (wake) => queue.onChange(wake))
      if (client.closed) return
      if (ctx.shutdown.aborted) throw new VgridError('ERR_PEER_LOST', 'the agent is stopping')
    }
  } finally {
    placed()
  }
}

/** How often a task whose command has ended checks, while its sub-tasks run, that its submitter is still there. */
const SUBMITTER_GONE_POLL_MS = 1_000

/**
 * An agent finds the grid again in the first seconds after it starts. A run for a member not
 * yet in its view then waits for it (queued, placed at the next change of the view) instead
 * of failing: a task placed again after a restart, or a `vrun --on` typed at once.
 */
export const VIEW_SETTLE_MS = 15_000

function pinnedPeer (ctx: RunContext, view: PeerView[], on: string): PeerView {
  try {
    return resolvePinned(view, ctx.grid.departed(), on)
  } catch (err) {
    if (err instanceof VgridError && err.code === 'ERR_NO_SUCH_PEER' && ctx.startedAt !== undefined && Date.now() - ctx.startedAt < VIEW_SETTLE_MS) {
      throw new VgridError('ERR_NO_CAPACITY', `${on} is not in the grid yet (this agent has just started)`, 'it starts when the member appears')
    }
    throw err
  }
}

/**
 * The members whose owners accept commands from this one (acceptsFrom, as advertised); when
 * that leaves none that could ever run the request though others could, ERR_NOT_ALLOWED
 * says so (a run no member will take must not wait for room). A member named with --on is
 * asked anyway: its own refusal says why.
 */
export function accepting (view: PeerView[], spec: RunSpec, self: string): PeerView[] {
  const open = view.filter((p) => acceptsFrom(p, self))
  if (open.length === view.length) return view
  try {
    candidates(open, spec)
  } catch (err) {
    if (!(err instanceof VgridError) || err.code !== 'ERR_IMPOSSIBLE_REQUEST') throw err
    try {
      candidates(view, spec)
    } catch (all) {
      if (all instanceof VgridError && all.code === 'ERR_IMPOSSIBLE_REQUEST') throw all
    }
    throw new VgridError('ERR_NOT_ALLOWED', 'every member that could run it runs commands only from members its owner accepts (--accept-from), and not from this one',
      `ask the owner of one to accept ${self}: vgrid agent set --accept-from …`)
  }
  return open
}

/** What placement keeps per agent: its line of waiting runs, and the refusals it was given. */
const placements = new WeakMap<RunContext, { queue: RunQueue, refusals: Refusals }>()

function placementOf (ctx: RunContext): { queue: RunQueue, refusals: Refusals } {
  let p = placements.get(ctx)
  if (p === undefined) placements.set(ctx, p = { queue: new RunQueue(), refusals: new Refusals() })
  return p
}

/** Resolves at the next change of the view or of the line, or after `ms`, or at shutdown. */
/**
 * Resolves at the next change of the view, when the agent stops, or after `ms`; `also`
 * subscribes to more that ends the wait (it returns its unsubscribe).
 */
export async function wakeUp (ctx: Pick<RunContext, 'grid' | 'shutdown'>, ms: number, also?: (wake: () => void) => () => void): Promise<void> {
  await new Promise<void>((resolve) => {
    const done = (): void => { clearTimeout(timer); unwatch(); unalso?.(); ctx.shutdown.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, ms)
    const unwatch = ctx.grid.onViewChange(done)
    const unalso = also?.(done)
    ctx.shutdown.addEventListener('abort', done, { once: true })
  })
}

/**
 * One placement round. From the members that fit now (this agent's view), CLAIM_FANOUT are
 * drawn, weighted by free capacity, and claimed on at once; the first to accept runs the
 * command, the others are released. This agent, when drawn, reserves on its own ledger first
 * (no network, and an answer before any other). Refused everywhere: another draw, up to
 * MAX_PLACEMENT_ATTEMPTS members; then ERR_NO_CAPACITY (the run is queued).
 */
interface PlaceOptions {
  on: string | undefined
  workspace: WorkspaceRef | undefined
  getScan: (() => Promise<WorkspaceScan>) | undefined
  onPlaced: () => void
  guest: boolean
  gang?: GangSeat
  detach: boolean
}

async function placeOnce (ctx: RunContext, client: FrameChannel, task: string, spec: RunSpec, o: PlaceOptions): Promise<void> {
  const { on, workspace, getScan, onPlaced, guest, gang } = o
  const view = ctx.grid.view()
  const { refusals } = placementOf(ctx)
  const shape = requestShape(spec, on)
  // A member that refused this kind of request is not asked again until it has advertised since.
  // The workspace's size at its last scan bounds what must travel (hasRoomFor); the scan below says it exactly.
  let fitting = candidates(on !== undefined ? [pinnedPeer(ctx, view, on)] : accepting(view, spec, ctx.grid.peerId), spec, workspace !== undefined ? ctx.sync.knownBytes(workspace) : undefined)
    .filter((p) => !refusals.stale(shape, p))
  let capacity: unknown
  let failure: unknown
  let tried = 0
  /** Members that could not take it (no room for the workspace, or refused before the start). */
  const unable = new Set<string>()
  // Told once another member is tried or the run waits: a run that fails says it once, in its error.
  const refused: Array<{ t: 'refused', peer: string, host: string, error: WireError }> = []
  const tellRefused = async (): Promise<void> => { for (const r of refused.splice(0)) await client.send(r) }
  if (workspace !== undefined) {
    for (const p of fitting) {
      const earlier = refusals.full(workspace.dir, p)
      if (earlier === undefined) continue
      unable.add(p.peer)
      failure = earlier
    }
    fitting = fitting.filter((p) => !unable.has(p.peer))
  }
  if (fitting.length === 0 && unable.size === 0) throw new VgridError('ERR_NO_CAPACITY', 'every member that could run it has just refused it', 'it starts when one has room (see `vgrid peers`)')
  while (fitting.length > 0 && tried < MAX_PLACEMENT_ATTEMPTS) {
    const drawn = chooseClaimTargets(fitting, Math.min(CLAIM_FANOUT, MAX_PLACEMENT_ATTEMPTS - tried), Math.random, spec)
    fitting = fitting.filter((p) => !drawn.includes(p))
    tried += drawn.length
    const self = drawn.find((p) => p.self)
    await tellRefused()
    if (self !== undefined) {
      try {
        const placed = { t: 'placed', peer: self.peer, host: self.resources.host, local: true }
        const where: RunDir = workspace !== undefined ? { kind: 'dir', dir: workspace.dir, ...(workspace.mount !== undefined ? { mount: workspace.mount } : {}) } : { kind: 'scratch' }
        await executeHere(ctx, client, task, spec, where, {
          guest,
          onAccepted: async () => {
            if (gang !== undefined && !await gang.hold()) throw new VgridError('ERR_NO_CAPACITY', GANG_NOT_PLACED)
            onPlaced()
            await client.send(placed)
          }
        })
        return
      } catch (err) {
        if (!(err instanceof VgridError) || err.code !== 'ERR_NO_CAPACITY') throw err
        capacity = err
      }
    }
    let remotes = drawn.filter((p) => !p.self)
    if (remotes.length === 0) continue
    const scanned = await getScan?.()
    if (scanned !== undefined) {
      const full = remotes.filter((p) => !hasRoomFor(p, scanned.bytes))
      if (full.length > 0) {
        failure = noRoom(full, scanned.bytes)
        for (const p of full) unable.add(p.peer)
        remotes = remotes.filter((p) => !full.includes(p))
        fitting = fitting.filter((p) => hasRoomFor(p, scanned.bytes))
        if (remotes.length === 0) continue
      }
    }
    const exports = new Map<string, string>()
    const result = await claimFirst(remotes, async (target) => {
      const exported = scanned !== undefined ? ctx.sync.exportTo(scanned, target.peer) : undefined
      // The executor's guest sees the workspace where its user has it.
      const ws = exported !== undefined && workspace !== undefined ? { ...exported, path: workspace.mount ?? workspace.dir } : exported
      if (ws !== undefined) exports.set(target.peer, ws.session)
      const channel = await ctx.grid.open(target.peer, EXEC_PROTOCOL, { signal: ctx.shutdown })
      await channel.send({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task, spec, user: USER, ...(ws !== undefined ? { ws } : {}), ...(o.detach ? { detach: true } : {}) })
      return channel
    })
    const winner = 'claim' in result ? result.claim.target.peer : undefined
    for (const [peer, session] of exports) if (peer !== winner) ctx.sync.registry.remove(session)
    if (!('claim' in result)) {
      for (const { target, error } of result.refused) {
        if (error instanceof VgridError && error.code === 'ERR_NO_CAPACITY') {
          capacity = error
          refusals.note(shape, target)
        } else {
          failure = error
        }
      }
      continue
    }
    const { target, channel: remote } = result.claim
    try {
      // A gang whose other shards could not all hold theirs: the stream's end releases this claim.
      if (gang !== undefined && !await gang.hold()) throw new VgridError('ERR_NO_CAPACITY', GANG_NOT_PLACED)
      onPlaced()
      await client.send({ t: 'placed', peer: target.peer, host: target.resources.host, local: false })
      // What the workspace scan left out, where the user sees it (not only in this agent's log).
      for (const w of scanned?.warnings ?? []) await client.send({ t: 'notice', text: clipText(`not synced: ${w.replace(/^skipped /, '')}`), own: true })
      await remote.send({ t: 'go' })
      await relay(ctx, client, remote, target.peer, target.resources.host, async (outputs) => {
        if (scanned === undefined) throw new VgridError('ERR_BAD_MESSAGE', 'outputs offered for a run without a workspace')
        await ctx.sync.bringBack(scanned, target.peer, outputs, task, async (e) => { await client.send(e) })
      })
      return
    } catch (err) {
      // It could not take the run after all (no disk space, its sync or sandbox failed): not
      // the run's failure. The next member is tried; this one is not asked again for this
      // workspace until it advertises more room (or, refused otherwise, until it advertises).
      if (!isRefusal(err)) throw err
      failure = err
      unable.add(target.peer)
      if (err.code === 'ERR_NO_SPACE' && workspace !== undefined) refusals.noteFull(workspace.dir, target, err)
      else refusals.note(shape, target)
      refused.push({ t: 'refused', peer: target.peer, host: target.resources.host, error: err.toWire() })
    } finally {
      remote.destroy()
      const session = exports.get(target.peer)
      if (session !== undefined) ctx.sync.registry.remove(session)
    }
  }
  if (capacity === undefined && unable.size > 0 && on === undefined) {
    // Members that could not take it do not fail the run while another could, busy now.
    try {
      candidates(accepting(ctx.grid.view().filter((p) => !unable.has(p.peer)), spec, ctx.grid.peerId), spec, workspace !== undefined ? ctx.sync.knownBytes(workspace) : undefined)
      capacity = new VgridError('ERR_NO_CAPACITY', 'the members that could run it have just refused it', 'it starts when one has room (see `vgrid peers`)')
    } catch (err) {
      if (err instanceof VgridError && err.code === 'ERR_NO_CAPACITY') capacity = err
    }
  }
  // Busy members queue the run; members that failed otherwise (unreachable, another version,
  // no room) fail it only when none was merely busy.
  if (capacity !== undefined) await tellRefused()
  throw capacity ?? failure ?? new VgridError('ERR_NO_CAPACITY')
}

/** The attempt of a detached run is gone from its executor (it restarted, or dropped it): lost, not failed. */
export class AttemptGone extends VgridError {}

/**
 * The owner comes back for a detached run (held.ts) after its stream broke or this agent
 * restarted: what its log lacks is replayed, then the session goes on as placeOnce's would.
 */
export async function reattachRun (ctx: RunContext, client: FrameChannel, o: { task: string, peer: string, host: string, have: number, started: boolean, workspace?: WorkspaceRef, startedMs: number }): Promise<void> {
  const remote = await ctx.grid.open(o.peer, EXEC_PROTOCOL, { signal: ctx.shutdown })
  try {
    await remote.send({ t: 'attach', v: EXEC_PROTOCOL_VERSION, task: o.task, have: o.have })
    const first = await withTimeout(remote.recv(), EXEC_REQUEST_TIMEOUT_MS, `${o.host} did not answer the re-attach within ${EXEC_REQUEST_TIMEOUT_MS} ms`)
    if (first === undefined) throw new VgridError('ERR_PEER_LOST', `${o.host} closed the stream`)
    const m = obj(first, 'attach answer')
    if (m.t === 'error') {
      const ev = parseExecEvent(first)
      if (ev.t === 'error' && ev.error.code === 'ERR_TASK_NOT_FOUND') throw new AttemptGone('ERR_PEER_LOST', ev.error.message)
      throw new VgridError('ERR_PEER_LOST', ev.t === 'error' ? ev.error.message : 'refused')
    }
    if (m.t !== 'attached') throw new VgridError('ERR_BAD_MESSAGE', 'malformed message: expected attached')
    await relay(ctx, client, remote, o.peer, o.host, async (outputs) => {
      if (o.workspace === undefined) throw new VgridError('ERR_BAD_MESSAGE', 'outputs offered for a run without a workspace')
      await ctx.sync.bringBackReattached(o.workspace, o.peer, outputs, o.task, o.startedMs, async (e) => { await client.send(e) })
    }, o.started)
  } finally {
    remote.destroy()
  }
}

/**
 * The CLI's channel as one relay after another reads it: a relay whose member refused the
 * run leaves its read of the next input pending, and a channel takes one read at a time, so
 * the next relay shares that read instead of starting one of its own.
 */
function oneReader (client: FrameChannel): FrameChannel {
  let pending: Promise<unknown> | undefined
  return {
    get closed () { return client.closed },
    send: async (msg) => { await client.send(msg) },
    recv: async () => {
      const read = pending ??= client.recv()
      try {
        return await read
      } finally {
        if (pending === read) pending = undefined
      }
    },
    close: async () => { await client.close() },
    destroy: (err) => { client.destroy(err) }
  }
}

/** Events down, inputs up, until the command's exit (or error) has reached the CLI. */
async function relay (ctx: RunContext, client: FrameChannel, remote: FrameChannel, peer: string, host: string,
  onOutputs: (o: { root: Uint8Array, session: string, base?: Uint8Array }) => Promise<void>, startedBefore = false): Promise<void> {
  let started = startedBefore
  // Until `started`, the member was still syncing the workspace or starting the command.
  const lost = (why: string): VgridError => new VgridError('ERR_PEER_LOST', `lost ${host} (${peer.slice(0, 12)}…) ${started ? 'while the command ran' : 'before the command started'}: ${why}`)
  let done = false
  // A member that leaves the view (stopped, or silent too long) is lost even if TCP has not noticed.
  const unwatch = ctx.grid.onViewChange(() => {
    if (!done && !ctx.grid.view().some((p) => p.peer === peer)) remote.destroy(lost('it left the grid'))
  })
  const up = (async () => {
    while (!done) {
      const raw = await client.recv().catch(() => undefined)
      if (raw === undefined) {
        // The CLI went away without waiting for the exit: the command must not outlive it.
        if (!done) remote.destroy()
        return
      }
      const input = parseExecInput(raw)
      // A send that fails means the remote stream has ended: the loop below reads why
      // (the exit that raced this input, or a lost member).
      if (!await remote.send(input).then(() => true, () => false)) return
    }
  })()
  up.catch((err) => {
    log.warn('refused an input from the command line', err)
    remote.destroy()
  })
  try {
    for (;;) {
      let raw: unknown
      try {
        raw = await remote.recv()
      } catch (err) {
        // Say which member was lost and how far the command had got there, whatever broke.
        throw err instanceof VgridError && err.message.startsWith(`lost ${host} `) ? err : lost((err as Error).message ?? 'the stream broke')
      }
      if (raw === undefined) throw lost('its connection closed')
      const ev: ExecEvent = parseExecEvent(raw)
      if (ev.t === 'started') started = true
      // Refused before the start: placeOnce tries another member.
      if (ev.t === 'error' && !started && isRefusal(fromWire(ev.error))) throw fromWire(ev.error)
      if (ev.t === 'outputs') {
        try {
          await onOutputs(ev)
          // A detached run's executor waits for this before it sends the exit (held.ts): were this
          // agent to die during the pull, the outputs are offered again when it is back.
          await remote.send({ t: 'outputs-done' }).catch(() => {})
        } catch (err) {
          // The command ran; only its outputs did not come back. The user must know which, and how it ended.
          await client.send({ t: 'error', error: { ...toWire(err), message: `the command ${describeExit(ev.exit)}, but its outputs could not be brought back: ${(err as Error).message}` } })
          return
        }
        continue
      }
      await client.send(ev)
      if (ev.t === 'exit' || ev.t === 'error') {
        // A detached run's executor keeps it until this word (held.ts); others ignore it.
        await remote.send({ t: 'end-seen' }).catch(() => {})
        // Closed, not reset: a reset can drop that word on its way, and the executor would keep the run for days.
        await withTimeout(remote.close(), END_SEEN_CLOSE_MS, 'closing the stream').catch(() => {})
        return
      }
    }
  } finally {
    done = true
    unwatch()
  }
}
