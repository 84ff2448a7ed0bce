/**
 * The executing end of a run: another member's exec request (serveExecProtocol), or this
 * agent's own run placed here (executeHere). The ledger is checked, the workspace copy brought
 * up to date (or, with --no-sync, a scratch directory made), the command run there, what it
 * changed offered back, and what it reserved released however it ends. On the submitter's own
 * machine the command runs in the workspace itself: nothing to sync.
 */
import path from 'node:path'
import { VgridError, toWire } from '../../common/errors.js'
import type { FrameChannel } from '../../common/channel.js'
import { createLogger } from '../../common/log.js'
import { withTimeout } from '../../common/timeout.js'
import { linkedSignal } from '../../common/abort.js'
import { serveExec, describeExit, type RunSpec, type ExecEvent } from '../../exec/index.js'
import { removeTree, type SyncCopyResult } from '../../fs-sync/index.js'
import { parseExecRequest, parseWorkspaceReady, type AttachRequest, type ExecRequest, type PendingWorkspace, type WorkspaceOffer } from '../../protocol/exec.js'
import type { GroupLedger } from '../../exec/orphans.js'
import { forgetHandOver, type GuestRun } from '../guest-run.js'
import type { HeldRun } from '../held.js'
import { holdClaim, ClaimReleased } from '../claim.js'
import { EXEC_REQUEST_TIMEOUT_MS, SHUTDOWN_KILL_GRACE_MS } from '../constants.js'
import { USER, type ChildTracker, type Guest, type RunContext } from './context.js'
import { agentEnv, makeCwd, safeCwd } from './workdir.js'
import { refusalOf } from './refusal.js'

const log = createLogger('run')

/** A command's session as the executor drives it: its events out, the submitter's inputs in (parsed by serveExec). */
type Session = FrameChannel<unknown, ExecEvent>

/** Where a command runs on the executing machine. */
export type RunDir =
  | { kind: 'scratch' }
  /** `mount`: where the command sees it, when not at `dir` (a guest's sub-task in the guest's copy). */
  | { kind: 'dir', dir: string, mount?: string }
  | { kind: 'copy', submitter: string, offer: WorkspaceOffer | PendingWorkspace }

/**
 * A view of the channel that keeps the command's `exit` back (sub-tasks must end, and with a
 * synced workspace the outputs must reach the submitter, before it is told the command is
 * over), and takes a `cancel` input out of the stream for `onCancel`.
 */
function holdingExit (channel: Session, onCancel: () => void): { channel: Session, held: () => ExecEvent | undefined } {
  let held: ExecEvent | undefined
  const view: Session = {
    get closed () { return channel.closed },
    send: async (ev) => {
      if (ev.t === 'exit') { held = ev; return }
      await channel.send(ev)
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

/** Runs a command on this machine against a reservation; `channel` carries its session. */
export interface ExecuteOptions {
  /**
   * Called once the reservation is held, before any work; it calls `answered` once its answer
   * to the submitter is on its way (the copy's check starts then: its stats would hold that
   * answer back).
   */
  onAccepted?: (answered: () => void) => Promise<void>
  /** Another member's run: who sent it. Its task id is that member's to keep. */
  remote?: Guest
  /** A guest's command although submitted here: a sub-task of a guest task. */
  guest?: boolean
  /** A detached run: `channel` is its HeldRun, and its outputs wait for an owner that is away. */
  held?: HeldRun
}

/** One attempt of a command here: its task id, what it runs and needs, and where. */
export interface Attempt { task: string, spec: RunSpec, where: RunDir }

export async function executeHere (ctx: RunContext, channel: Session, attempt: Attempt, opts: ExecuteOptions = {}): Promise<void> {
  const { task } = attempt
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
    await executeAttempt(ctx, channel, attempt, { ...opts, who, isGuest })
  } finally {
    if (remote !== undefined) ctx.attempts?.delete(task)
  }
}

async function executeAttempt (ctx: RunContext, channel: Session, attempt: Attempt, opts: ExecuteOptions & { who: string, isGuest: boolean }): Promise<void> {
  const { task, spec, where } = attempt
  const { onAccepted, remote, who, isGuest } = opts
  channel = ctx.watch?.(channel) ?? channel
  // RunSpec is a ResourceRequest (common/resources.ts): what the ledger reserves.
  const reservation = ctx.ledger.reserve(spec)
  for (const g of reservation.gpus) ctx.gpuUse?.set(g.index, { index: g.index, task, who })
  ctx.loadChanged()
  // Where a run without a workspace works: taken below, given back (dir-pool.ts) or removed at the end.
  let scratch: string | undefined
  let copy: { dir: string, release: () => void } | undefined
  let kids: ReturnType<ChildTracker['begin']> | undefined
  let guest: GuestRun | undefined
  // Set from the claim's go until the command is started: what fails then is this member's refusal.
  let preparing = false
  // A workspace the submitter still scans: its copy is checked from the request on (stopped
  // if the claim goes elsewhere), so the two stat passes overlap.
  const checking = new AbortController()
  // Set when the attempt is over: a check not started by then never starts.
  let over = false
  let prepared: ReturnType<typeof ctx.sync.prepareCopy> | undefined
  try {
    if (where.kind === 'copy' && 'pending' in where.offer) copy = await ctx.sync.acquireCopy(where.submitter, where.offer.key)
    // The copy is checked while the submitter scans, from once the claim's answer is out.
    // Started before, the check's batches of stats held that answer back 11-15 ms (libp2p
    // writes it a few turns after `send` resolves), and with it the go and the submitter's
    // scan; one turn of the timers after the send lets it leave (~1 ms to the submitter).
    const check = (): void => {
      if (copy === undefined || prepared !== undefined || over) return
      prepared = ctx.sync.prepareCopy(copy.dir, AbortSignal.any([ctx.shutdown, checking.signal]))
    }
    await onAccepted?.(() => { setTimeout(check, 0) })
    check()
    preparing = remote !== undefined
    let root: string
    if (where.kind === 'dir') {
      root = where.dir
    } else if (where.kind === 'copy') {
      copy ??= await ctx.sync.acquireCopy(where.submitter, where.offer.key)
      root = copy.dir
    } else {
      scratch = ctx.scratch.take().dir
      root = scratch
    }
    const cwd = safeCwd(root, spec.cwd)
    const send = async (ev: ExecEvent): Promise<void> => { await channel.send(ev) }
    let synced: SyncCopyResult | undefined
    if (where.kind === 'copy') {
      let offer = where.offer
      if ('pending' in offer) {
        // the rest of the offer follows the go, once the submitter's scan is done
        const raw = await channel.recv()
        if (raw === undefined) throw new VgridError('ERR_PEER_LOST', 'the submitter went away before its workspace was scanned')
        const ready = parseWorkspaceReady(raw)
        offer = { key: offer.key, session: ready.session, root: ready.root, ...(offer.path !== undefined ? { path: offer.path } : {}) }
      }
      synced = await ctx.sync.pullCopy(root, where.submitter, offer, send, ctx.shutdown, prepared)
    }
    await makeCwd(root, cwd)
    let env: Record<string, string>
    if (isGuest && ctx.guests !== undefined) {
      // Its own home and socket, and unless the owner chose otherwise, a sandbox.
      const mount = where.kind === 'copy' ? where.offer.path ?? root : where.kind === 'dir' ? where.mount ?? where.dir : undefined
      guest = await ctx.guests.open({ task, root, cwd, ...(mount !== undefined ? { mount } : {}), ...(synced !== undefined ? { copy: synced } : {}), gpus: reservation.gpus, cpus: reservation.cpus, agentEnv: agentEnv() })
      env = guest.env
    } else {
      // Not a guest: what it writes in a copy is not the guest user's (guest-run.ts).
      if (where.kind === 'copy') forgetHandOver(root)
      // vrun and vbatch inside the command reach this agent and become the task's sub-tasks.
      env = { ...agentEnv(), VGRID_TASK_ID: task, VGRID_HOME: ctx.home, VGRID_WORKSPACE: root, PWD: cwd }
      env.PATH = [path.join(ctx.home, 'bin'), env.PATH].filter(Boolean).join(':')
    }
    if (synced !== undefined) await ctx.sync.recordWritten(root, synced)
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
      ...(guest?.sandbox !== undefined ? { sandbox: guest.sandbox } : {}),
      ...(ctx.fifos !== undefined ? { fifos: ctx.fifos } : {})
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
    over = true
    // Only where a check was started: an abort with no reason makes a DOMException, stack and all.
    if (prepared !== undefined) checking.abort()
    kids?.end()
    await guest?.close()
    copy?.release()
    for (const g of reservation.gpus) if (ctx.gpuUse?.get(g.index)?.task === task) ctx.gpuUse.delete(g.index)
    ctx.ledger.release(reservation)
    ctx.loadChanged()
    // Mostly left empty: kept for the next run; else the whole walk.
    if (scratch !== undefined && !ctx.scratch.give(scratch)) await removeTree(scratch).catch(() => {})
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

/** After the pull of a detached run's outputs ended, the owner's word that it has them must come within this. */
const OUTPUTS_ACK_TIMEOUT_MS = 30_000

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
      await executeHere(ctx, session, { task: req.task, spec: req.spec, where: req.ws !== undefined ? { kind: 'copy', submitter: remotePeer, offer: req.ws } : { kind: 'scratch' } }, {
        onAccepted: async (answered) => { await holdClaim(channel, answered); held?.arm() },
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

/** How often a task whose command has ended checks, while its sub-tasks run, that its submitter is still there. */
const SUBMITTER_GONE_POLL_MS = 1_000

