/**
 * Where a run goes. The Placer owns this agent's line of waiting runs (run-queue.ts) and the
 * refusals members gave (claim.ts): a new run does not overtake older ones waiting for the
 * same members, and a member that refused a kind of request is not asked again until it has
 * advertised since. Each round draws members from the view (grid/placement.ts), claims on a
 * few at once, and runs the command on the first that holds it: here (execute.ts) or there
 * (relay.ts).
 */
import { VgridError, clipText, type WireError } from '../../common/errors.js'
import type { RunSpec } from '../../exec/index.js'
import { accepting, candidates, pinnedCandidates, resolvePinned, chooseClaimTargets, hasRoomFor, noRoom, CLAIM_FANOUT, MemberAway } from '../../grid/placement.js'
import type { PeerView } from '../../grid/index.js'
import type { WorkspaceRef } from '../../fs-sync/index.js'
import { EXEC_PROTOCOL, EXEC_PROTOCOL_VERSION, type WorkspaceReady } from '../../protocol/exec.js'
import type { WorkspaceScan } from '../workspace-sync.js'
import { claimFirst, Refusals, GANG_NOT_PLACED, type GangSeat } from '../claim.js'
import { RunQueue, requestShape, type QueueTicket } from '../run-queue.js'
import { MAX_PLACEMENT_ATTEMPTS, QUEUE_RETRY_MS } from '../constants.js'
import { USER, VIEW_SETTLE_MS, wakeUp, type RunContext } from './context.js'
import { executeHere, type RunDir } from './execute.js'
import { isRefusal } from './refusal.js'
import { LoadNotes } from './load-notes.js'
import { oneReader, relay } from './relay.js'
import type { Run, RunSink } from './run.js'

/** How a run is placed. */
export interface SubmitOptions {
  on?: string
  workspace?: WorkspaceRef
  /** One shard of a gang: placed once, on its member. */
  gang?: GangSeat
  /** Submitted by a guest (through a task's socket): contained wherever it runs, here too. */
  guest?: boolean
  /** A task, not a vrun: on another member it outlives this agent's stream (held.ts). */
  detach?: boolean
}


interface PlaceOptions {
  on: string | undefined
  workspace: WorkspaceRef | undefined
  getScan: (() => Promise<WorkspaceScan>) | undefined
  onPlaced: () => void
  guest: boolean
  gang?: GangSeat
  detach: boolean
}

export class Placer {
  /** Runs waiting for room, in the order they came. */
  private readonly queue = new RunQueue()
  /** What members refused lately, and which had no room for which workspace. */
  private readonly refusals = new Refusals()
  /** Room this agent took and freed on members since their last advertisements. */
  private readonly notes = new LoadNotes()

  constructor (private readonly ctx: RunContext) {}

  /**
   * Places `run` and follows it until its command ends (run.drive). When every member that
   * could run it is busy, or the member named with --on left lately, the run waits (its
   * followers are told why, again when that changes) and is placed again at the next change
   * of the view, until it is abandoned.
   */
  async submit (run: Run, spec: RunSpec, o: SubmitOptions = {}): Promise<void> {
    await run.drive(async (sink) => { await this.submitOn(sink, run.task, spec, o) })
  }

  private async submitOn (sink: RunSink, task: string, spec: RunSpec, o: SubmitOptions): Promise<void> {
    const ctx = this.ctx
    const client = oneReader(sink)
    const { on, workspace, gang } = o
    const guest = o.guest === true
    if (gang !== undefined) {
      // One shard of a gang: one try, on its member; the gang as a whole is placed again.
      const getScan = workspace === undefined ? undefined : async () => await ctx.sync.scan(workspace, ctx.shutdown)
      try {
        await this.placeOnce(client, task, spec, { on, workspace, getScan, onPlaced: () => {}, guest, gang, detach: o.detach === true })
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
    const queue = this.queue
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
            await this.placeOnce(client, task, spec, { on, workspace, getScan, onPlaced: placed, guest, detach: o.detach === true })
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
        await wakeUp(ctx, QUEUE_RETRY_MS, (wake) => {
          const unqueue = queue.onChange(wake)
          const unrelease = ctx.ledger.onRelease(wake)
          const unfreed = this.notes.onFreed(wake)
          return () => { unqueue(); unrelease(); unfreed() }
        })
        if (client.closed) return
        if (ctx.shutdown.aborted) throw new VgridError('ERR_PEER_LOST', 'the agent is stopping')
      }
    } finally {
      placed()
    }
  }

  /**
   * A command of this agent's ended on `peer`: the room it held there is free now, and the
   * runs waiting for room may try it (whatever it refused before) without waiting for its
   * next advertisement.
   */
  private freed (peer: string, room: RunSpec): void {
    const member = this.ctx.grid.view().find((p) => p.peer === peer)
    if (member === undefined) return
    this.refusals.forget(peer)
    this.notes.freed(member, room)
  }

  private pinnedPeer (view: PeerView[], on: string): PeerView {
    const ctx = this.ctx
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
   * One placement round. From the members that fit now (this agent's view), CLAIM_FANOUT are
   * drawn, weighted by free capacity, and claimed on at once; the first to accept runs the
   * command, the others are released. This agent, when drawn, reserves on its own ledger first
   * (no network, and an answer before any other). Refused everywhere: another draw, up to
   * MAX_PLACEMENT_ATTEMPTS members; then ERR_NO_CAPACITY (the run is queued).
   */
  private async placeOnce (client: RunSink, task: string, spec: RunSpec, o: PlaceOptions): Promise<void> {
    const ctx = this.ctx
    const { on, workspace, getScan, onPlaced, guest, gang } = o
    const view = this.notes.adjust(ctx.grid.view())
    const refusals = this.refusals
    const shape = requestShape(spec, on)
    // A member that refused this kind of request is not asked again until it has advertised since.
    // The workspace's size at its last scan bounds what must travel (hasRoomFor); the scan below says it exactly.
    const syncBytes = workspace !== undefined ? ctx.sync.knownBytes(workspace) : undefined
    let fitting = on !== undefined ? pinnedCandidates(this.pinnedPeer(view, on), spec, syncBytes) : candidates(accepting(view, spec, ctx.grid.peerId), spec, syncBytes)
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
          const placed = { t: 'placed' as const, peer: self.peer, host: self.resources.host, local: true }
          const where: RunDir = workspace !== undefined ? { kind: 'dir', dir: workspace.dir, ...(workspace.mount !== undefined ? { mount: workspace.mount } : {}) } : { kind: 'scratch' }
          await executeHere(ctx, client, { task, spec, where }, {
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
      // A vrun from a workspace scanned before: it is scanned again while the claim is made
      // and the executor checks its copy; the session and root follow the go. (Placement went
      // by the size of the last scan; the new one is checked against the winner's room.)
      const overlapped = getScan !== undefined && workspace !== undefined && gang === undefined && !o.detach && syncBytes !== undefined
      let scanned = overlapped ? undefined : await getScan?.()
      if (scanned !== undefined) {
        const bytes = scanned.bytes
        const full = remotes.filter((p) => !hasRoomFor(p, bytes))
        if (full.length > 0) {
          failure = noRoom(full, bytes)
          for (const p of full) unable.add(p.peer)
          remotes = remotes.filter((p) => !full.includes(p))
          fitting = fitting.filter((p) => hasRoomFor(p, bytes))
          if (remotes.length === 0) continue
        }
      }
      const exports = new Map<string, string>()
      const result = await claimFirst(remotes, async (target) => {
        const exported = scanned !== undefined ? ctx.sync.exportTo(scanned, target.peer) : undefined
        // The executor's guest sees the workspace where its user has it.
        const path = workspace !== undefined ? workspace.mount ?? workspace.dir : undefined
        const ws = overlapped && workspace !== undefined
          ? { key: ctx.sync.workspaceKey(workspace), path: path!, pending: true }
          : exported !== undefined && path !== undefined ? { ...exported, path } : exported
        if (exported !== undefined) exports.set(target.peer, exported.session)
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
      this.notes.taken(target, spec)
      try {
        // A gang whose other shards could not all hold theirs: the stream's end releases this claim.
        if (gang !== undefined && !await gang.hold()) throw new VgridError('ERR_NO_CAPACITY', GANG_NOT_PLACED)
        onPlaced()
        await client.send({ t: 'placed', peer: target.peer, host: target.resources.host, local: false })
        await remote.send({ t: 'go' })
        if (overlapped) {
          // Scanned once a claim is won: its blocking stats would have held the requests
          // back, and the executor's check started when its request arrived.
          scanned = await getScan!()
          if (!hasRoomFor(target, scanned.bytes)) throw noRoom([target], scanned.bytes)
          const exported = ctx.sync.exportTo(scanned, target.peer)
          exports.set(target.peer, exported.session)
          await remote.send({ t: 'ws', session: exported.session, root: exported.root } satisfies WorkspaceReady)
        }
        // What the workspace scan left out, where the user sees it (not only in this agent's log).
        for (const w of scanned?.warnings ?? []) await client.send({ t: 'notice', text: clipText(`not synced: ${w.replace(/^skipped /, '')}`), own: true })
        const outputsBase = scanned
        await relay(ctx, client, remote, { peer: target.peer, host: target.resources.host }, {
          onEnd: () => { this.freed(target.peer, spec) },
          onOutputs: async (outputs) => {
            if (outputsBase === undefined) throw new VgridError('ERR_BAD_MESSAGE', 'outputs offered for a run without a workspace')
            await ctx.sync.bringBack(outputsBase, target.peer, outputs, task, async (e) => { await client.send(e) })
          }
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
        candidates(accepting(this.notes.adjust(ctx.grid.view()).filter((p) => !unable.has(p.peer)), spec, ctx.grid.peerId), spec, workspace !== undefined ? ctx.sync.knownBytes(workspace) : undefined)
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
}
