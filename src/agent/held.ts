/**
 * Detached runs on the executor (DESIGN §3, issue 16): a `vbatch` task lives on the member
 * that runs it, not on its owner's uptime. The owner asks for it with `detach` in its exec
 * request; from the claim's `go` on, this side of the session is a HeldRun. While the owner
 * is connected, events travel as before; when its stream breaks (the owner stopped,
 * restarted, was killed, or its network went down) the command goes on, and its events are
 * kept: in memory, spilled to `$VGRID_HOME/held/<task>/events` past HELD_MEMORY_BYTES, at most
 * HELD_OUTPUT_CAP_BYTES of output (a notice says when output was dropped). The owner comes
 * back with an `attach` request naming how much of the output it has; the rest is replayed,
 * and the session goes on live. The outputs wait for it (the step before `exit`), for as long
 * as the executor keeps results (`--keep-results`, default 7 days); then they are dropped.
 *
 * What is replayed: `started`, `out`, `notice`, `children`, `exit`, `error`. Not `sync`
 * (progress, stale once seen) nor `outputs` (its session is offered afresh to whoever is
 * attached when the command has ended).
 */
import fs from 'node:fs'
import path from 'node:path'
import { createHash } from 'node:crypto'
import { decode } from 'cborg'
import { encodeFrame, type FrameChannel } from '../common/channel.js'
import { VgridError } from '../common/errors.js'
import { createLogger } from '../common/log.js'
import { formatBytes } from '../common/units.js'

const log = createLogger('held')

/** Events kept in memory per run before they are written to disk. */
export const HELD_MEMORY_BYTES = 1024 * 1024
/** Output kept per run while its owner is away; past it, output is dropped (and said so). */
export const HELD_OUTPUT_CAP_BYTES = 256 * 1024 * 1024
/** How long an executor keeps a finished run's results for an owner that is away. */
export const DEFAULT_KEEP_RESULTS_MS = 7 * 24 * 3600_000
/** An owner that got a run's last event says so within this; else the run is kept for its return. */
export const HELD_END_ACK_TIMEOUT_MS = 30_000
/** A run whose end reached its owner is forgotten this long after (the owner may have crashed while saving it). */
export const HELD_DELIVERED_KEEP_MS = 60_000

const NOT_KEPT: ReadonlySet<string> = new Set(['sync', 'outputs'])
/** A spilled run is replayed reading this much of its file at a time. */
const REPLAY_READ_BYTES = 1024 * 1024

type KeptEvent = { t: string, data?: Uint8Array, text?: string }

/**
 * The whole frames at the start of `buf` ([length: 4 bytes BE][CBOR]), each decoded from a
 * copy of its bytes (the buffer may be reused), and how many bytes they took.
 */
function framesIn (buf: Uint8Array): { events: KeptEvent[], used: number } {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const events: KeptEvent[] = []
  let off = 0
  while (off + 4 <= buf.byteLength) {
    const len = view.getUint32(off)
    if (off + 4 + len > buf.byteLength) break
    events.push(decode(buf.slice(off + 4, off + 4 + len)) as KeptEvent)
    off += 4 + len
  }
  return { events, used: off }
}

/** How many bytes an event adds to the owner's task log (a notice is logged as `vgrid: TEXT\n`). */
export function logBytesOf (ev: { t: string, data?: Uint8Array, text?: string }): number {
  if (ev.t === 'out') return ev.data?.byteLength ?? 0
  if (ev.t === 'notice') return Buffer.byteLength(`vgrid: ${ev.text ?? ''}\n`)
  return 0
}

export class HeldRun implements FrameChannel {
  private live: FrameChannel | undefined
  private armed = false
  private finished = false
  private delivered = false
  private frames: Uint8Array[] = []
  private memBytes = 0
  private spilled = false
  private outBytes = 0
  private capped = false
  /** The last event, when it ends the session (exit or error): all that is kept once delivered. */
  private last: Uint8Array | undefined
  private tail: Promise<void> = Promise.resolve()
  private liveWaiters: Array<() => void> = []
  /** Told when the owner says it has the outputs (true), or when its stream ends first (false). */
  private outputsWaiters: Array<(taken: boolean) => void> = []
  /** The same for the session's last event (`end-seen`). */
  private endWaiters: Array<(seen: boolean) => void> = []
  /** The attached owner said it has the last event: it may say so before this side has closed. */
  private endSeen = false
  /** The channel a read of ours waits on, if any: an owner's word is only seen by a read. */
  private readingOn: FrameChannel | undefined
  private expiry: NodeJS.Timeout | undefined
  /** The owner came back at least once: it has no scan of its own to bring outputs back against. */
  reattached = false
  /** Its command has started (a `started` event went by). */
  began = false

  private readonly memoryBytes: number
  private readonly outputCapBytes: number

  constructor (readonly owner: string, readonly task: string, private readonly dir: string, private readonly host: string, private readonly onGone: (r: HeldRun) => void, first: FrameChannel,
    limits: { memoryBytes?: number, outputCapBytes?: number, keepMs?: number } = {}) {
    this.live = first
    this.memoryBytes = limits.memoryBytes ?? HELD_MEMORY_BYTES
    this.outputCapBytes = limits.outputCapBytes ?? HELD_OUTPUT_CAP_BYTES
    this.keepMs = limits.keepMs ?? DEFAULT_KEEP_RESULTS_MS
  }

  private get file (): string { return path.join(this.dir, 'events') }

  /** The claim was answered with `go`: from now on the run outlives its owner's stream. */
  arm (): void {
    this.armed = true
  }

  get attached (): boolean {
    return this.live !== undefined && !this.live.closed
  }

  get closed (): boolean {
    return this.finished
  }

  /** Resolves true once an owner is attached (at once if one is), false after `ms`. */
  async whenAttached (ms: number): Promise<boolean> {
    if (this.attached) return true
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { resolve(false) }, ms)
      timer.unref()
      this.liveWaiters.push(() => { clearTimeout(timer); resolve(true) })
    })
  }

  async send (msg: unknown): Promise<void> {
    if (!this.armed) { await this.live!.send(msg); return }
    const ev = msg as { t: string, data?: Uint8Array, text?: string }
    if (ev.t === 'started') this.began = true
    const p = this.tail.then(async () => {
      if (!NOT_KEPT.has(ev.t)) await this.keep(ev)
      const live = this.live
      if (live === undefined) return
      try {
        await live.send(msg)
      } catch {
        this.detach(live)
      }
    })
    this.tail = p.catch(() => {})
    await this.tail
  }

  private async keep (ev: { t: string, data?: Uint8Array, text?: string }): Promise<void> {
    const n = logBytesOf(ev)
    if (ev.t === 'out' && this.outBytes + n > this.outputCapBytes) {
      if (this.capped) return
      this.capped = true
      ev = { t: 'notice', text: `output past ${formatBytes(this.outputCapBytes)} was not kept on ${this.host} for an owner away` }
    }
    this.outBytes += logBytesOf(ev)
    const frame = encodeFrame(ev)
    this.last = ev.t === 'exit' || ev.t === 'error' ? frame : undefined
    if (!this.spilled && this.memBytes + frame.byteLength <= this.memoryBytes) {
      this.frames.push(frame)
      this.memBytes += frame.byteLength
      return
    }
    try {
      if (!this.spilled) {
        await fs.promises.mkdir(this.dir, { recursive: true, mode: 0o700 })
        await fs.promises.writeFile(this.file, Buffer.concat(this.frames))
        this.frames = []
        this.memBytes = 0
        this.spilled = true
      }
      await fs.promises.appendFile(this.file, frame)
    } catch (err) {
      // A full disk must not stop the command: what was not kept is lost to a late owner only.
      log.warn(`could not keep the events of task ${this.task}`, err)
    }
  }

  async recv (): Promise<unknown> {
    for (;;) {
      const live = this.live
      if (live === undefined) {
        if (this.finished) return undefined
        await new Promise<void>((resolve) => { this.liveWaiters.push(resolve) })
        continue
      }
      let msg: unknown
      this.readingOn = live
      try {
        msg = await live.recv()
      } catch (err) {
        if (!this.armed) throw err
        msg = undefined
      } finally {
        if (this.readingOn === live) this.readingOn = undefined
      }
      const t = msg !== null && typeof msg === 'object' ? (msg as { t?: unknown }).t : undefined
      if (t === 'end-seen') this.endSeen = true
      if (t === 'outputs-done' || t === 'end-seen') {
        for (const w of (t === 'end-seen' ? this.endWaiters : this.outputsWaiters).splice(0)) w(true)
        continue
      }
      if (msg !== undefined) return msg
      if (!this.armed) return undefined
      this.detach(live)
      if (this.finished) return undefined
    }
  }


  /**
   * Resolves true once the attached owner says it has pulled the outputs just offered, false
   * when its stream ends first (they are offered again to the next one). Call before the offer.
   */
  async outputsTaken (): Promise<boolean> {
    return await this.waitFor(this.outputsWaiters, this.keepMs)
  }

  /** The owner's stream ended: the run goes on without it. */
  private detach (live: FrameChannel): void {
    if (this.live !== live) return
    this.live = undefined
    live.destroy()
    for (const w of this.outputsWaiters.splice(0)) w(false)
    for (const w of this.endWaiters.splice(0)) w(false)
    if (this.armed && !this.finished) log.debug(`the owner of task ${this.task} went away; the run goes on and keeps its events`)
  }

  /**
   * The owner is back: what it lacks is replayed (`have`: output bytes it logged of this
   * attempt), then the session is live on `channel`.
   */
  async attach (channel: FrameChannel, have: number): Promise<void> {
    const p = this.tail.then(async () => {
      const old = this.live
      this.live = undefined
      old?.destroy()
      this.reattached = true
      this.endSeen = false
      await channel.send({ t: 'attached' })
      let skip = have
      for await (const ev of this.kept()) {
        const n = logBytesOf(ev)
        if (n > 0 && skip > 0) {
          if (skip >= n) { skip -= n; continue }
          if (ev.t === 'out') { await channel.send({ ...ev, data: ev.data!.subarray(skip) }); skip = 0; continue }
          skip = 0
          continue
        }
        await channel.send(ev)
      }
      this.live = channel
      for (const w of this.liveWaiters.splice(0)) w()
    })
    this.tail = p.catch(() => {})
    await p
    if (this.finished) await this.deliverEnd()
  }

  /** The events kept, in order: from memory, or read back from the spill file a window at a time. */
  private async * kept (): AsyncGenerator<KeptEvent> {
    if (!this.spilled) {
      for (const f of this.frames) yield * framesIn(f).events
      return
    }
    const fh = await fs.promises.open(this.file, 'r').catch(() => undefined)
    if (fh === undefined) return
    try {
      const buf = Buffer.allocUnsafe(REPLAY_READ_BYTES)
      let rest = Buffer.alloc(0)
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null)
        if (bytesRead === 0) return
        const data = rest.length > 0 ? Buffer.concat([rest, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead)
        const { events, used } = framesIn(data)
        // what follows the last whole frame, copied: `buf` is read into again
        rest = Buffer.from(data.subarray(used))
        yield * events
      }
    } finally {
      await fh.close()
    }
  }

  /** The session is over (its last event sent or kept): kept until its owner has it. */
  async close (): Promise<void> {
    await this.tail
    if (!this.armed) {
      // Never claimed (refused, or placed elsewhere): nothing ran, nothing is kept.
      try { await this.live?.close() } finally { this.finished = true; this.onGone(this) }
      return
    }
    this.finished = true
    for (const w of this.liveWaiters.splice(0)) w()
    await this.deliverEnd()
  }

  /**
   * The end went to an attached owner: forgotten once it says it has it (sent into a stream
   * is not read: an owner frozen, then cut off, never read it). Else kept for its return.
   */
  private async deliverEnd (): Promise<void> {
    const live = this.live
    // The owner's word may have come with its stream's end (it closes right after): then the
    // stream is gone, and the end was delivered all the same.
    if (this.endSeen || (live !== undefined && !live.closed && await this.waitFor(this.endWaiters, HELD_END_ACK_TIMEOUT_MS))) {
      this.delivered = true
      await this.endDelivered(this.live)
    } else if (!this.delivered) {
      this.expireIn(this.keepMs)
    }
  }

  /** Resolves true when the owner's word comes (a waiter of `list` is called true), false when its stream ends or `ms` pass. */
  private async waitFor (list: Array<(ok: boolean) => void>, ms: number): Promise<boolean> {
    if (!this.attached) return false
    const p = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { resolve(false) }, ms)
      timer.unref()
      list.push((ok) => { clearTimeout(timer); resolve(ok) })
    })
    // Whatever read the command's inputs may be gone: someone must read the answer.
    if (this.readingOn === undefined || this.readingOn !== this.live) void this.recv().catch(() => {})
    return await p
  }

  private async endDelivered (live: FrameChannel | undefined): Promise<void> {
    if (live !== undefined) {
      await live.close().catch(() => {})
      // A read of it may still wait (for an owner that keeps its end open): it ends now.
      live.destroy()
      if (this.live === live) this.live = undefined
    }
    // Its owner has it all: only the end is kept, for an owner that dies before it saved it.
    this.frames = this.last !== undefined ? [this.last] : []
    this.memBytes = this.last?.byteLength ?? 0
    if (this.spilled) {
      this.spilled = false
      fs.promises.rm(this.dir, { recursive: true, force: true }).catch(() => {})
    }
    this.expireIn(HELD_DELIVERED_KEEP_MS)
  }

  /** How long its results wait for an owner that is away (`--keep-results`). */
  readonly keepMs: number

  private expireIn (ms: number): void {
    clearTimeout(this.expiry)
    this.expiry = setTimeout(() => { this.drop(this.delivered ? 'delivered' : 'its owner did not come back') }, ms)
    this.expiry.unref()
  }

  /** Forgets the run: its kept events are deleted. */
  drop (why: string): void {
    clearTimeout(this.expiry)
    this.finished = true
    for (const w of this.liveWaiters.splice(0)) w()
    if (this.armed && !this.delivered) log.warn(`dropped the results of task ${this.task} of ${this.owner}: ${why}`)
    fs.promises.rm(this.dir, { recursive: true, force: true }).catch(() => {})
    this.onGone(this)
  }

  destroy (err?: Error): void {
    this.finished = true
    for (const w of this.liveWaiters.splice(0)) w()
    this.live?.destroy(err)
    this.live = undefined
    this.expireIn(HELD_DELIVERED_KEEP_MS)
  }
}

/** The detached runs of this agent, by owner and task. */
export class HeldRuns {
  private readonly runs = new Map<string, HeldRun>()

  constructor (private readonly home: string, private readonly host: string, private readonly keepMs = DEFAULT_KEEP_RESULTS_MS) {
    // What an earlier run of this agent kept ended with it: its commands were stopped.
    fs.rmSync(path.join(home, 'held'), { recursive: true, force: true })
  }

  private static key (owner: string, task: string): string {
    return `${owner}/${task}`
  }

  open (owner: string, task: string, channel: FrameChannel): HeldRun {
    const k = HeldRuns.key(owner, task)
    this.runs.get(k)?.drop('a new attempt of it began')
    const run = new HeldRun(owner, task, path.join(this.home, 'held', `${task}-${createHash('sha256').update(owner).digest('hex').slice(0, 12)}`), this.host, (r) => { if (this.runs.get(k) === r) this.runs.delete(k) }, channel, { keepMs: this.keepMs })
    this.runs.set(k, run)
    return run
  }

  /** An owner came back for `task`: ERR_TASK_NOT_FOUND when this agent has no such run (it restarted, or dropped it). */
  async attach (owner: string, task: string, channel: FrameChannel, have: number): Promise<void> {
    const run = this.runs.get(HeldRuns.key(owner, task))
    if (run === undefined) {
      throw new VgridError('ERR_TASK_NOT_FOUND', `${this.host} no longer has task ${task}: it restarted since, or dropped the results after keeping them ${Math.round(this.keepMs / 3600_000)} h`)
    }
    await run.attach(channel, have)
  }
}
