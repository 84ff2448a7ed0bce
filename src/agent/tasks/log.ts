/**
 * A task's output log: `$VGRID_HOME/tasks/<id>.log`, frames of [fd: 1 byte][length: 4 bytes
 * BE][data], appended in the order the output came. The fd byte has OWN_FLAG for lines this
 * agent wrote itself (attempt separators, "placing it again"): shown as any other, they are not
 * counted when the owner tells an executor how much of an attempt's output it has (held.ts). Followers get each frame once it is in
 * the file, numbered, so a reader that read the file and then follows misses none and sees
 * none twice.
 *
 * An owner keeps one per task record, up to MAX_TASKS of them, nearly all of tasks long
 * ended: so an idle log holds no set, promise or path of its own, and one opened after a
 * restart reads its file only when it is appended to or asked its length.
 */
import fs from 'node:fs'
import path from 'node:path'

export interface LogFrame { seq: number, fd: 1 | 2, data: Uint8Array, own?: boolean }
type Follower = (f: LogFrame) => void

const HEADER = 5
const OWN_FLAG = 0x10
const SETTLED: Promise<void> = Promise.resolve()
/** `frames` and `appended` of a log opened after a restart, until its file is read. */
const UNCOUNTED = -1

export class TaskLog {
  private tail = SETTLED
  private frames = 0
  /** Frames appended, counted at once (the file catches up). */
  private appended = 0
  private followers: Set<Follower> | undefined

  /** `dir/<id>.log`; a new task's, empty. */
  constructor (private readonly dir: string, private readonly id: string) {}

  /** The log of a task recorded before a restart: frames may be in its file already. */
  static open (dir: string, id: string): TaskLog {
    const log = new TaskLog(dir, id)
    log.frames = log.appended = UNCOUNTED
    return log
  }

  get file (): string {
    return path.join(this.dir, `${this.id}.log`)
  }

  /** Counts what the file holds, the first time it matters: nothing was appended since the open. */
  private counted (): void {
    if (this.appended === UNCOUNTED) this.frames = this.appended = readFrames(this.file).length
  }

  /** How many frames the log holds, counting those not yet written: where the next one goes. */
  get length (): number {
    this.counted()
    return this.appended
  }

  /** Bytes of output from the executor (not this agent's own lines) in frames `from` on. */
  async receivedSince (from: number): Promise<number> {
    await this.flushed()
    let n = 0
    for (const f of readFrames(this.file).slice(from)) if (f.own !== true) n += f.data.byteLength
    return n
  }

  append (fd: 1 | 2, data: Uint8Array, own = false): void {
    if (data.byteLength === 0) return
    this.counted()
    this.appended++
    const frame = Buffer.allocUnsafe(HEADER + data.byteLength)
    frame[0] = own ? fd | OWN_FLAG : fd
    frame.writeUInt32BE(data.byteLength, 1)
    frame.set(data, HEADER)
    const tail: Promise<void> = this.tail.then(async () => {
      await fs.promises.appendFile(this.file, frame)
      const f: LogFrame = { seq: this.frames++, fd, data, ...(own ? { own } : {}) }
      if (this.followers !== undefined) for (const follow of this.followers) follow(f)
    }).catch(() => {}).finally(() => { if (this.tail === tail) this.tail = SETTLED })
    this.tail = tail
  }

  /** Nothing appended is still on its way to the file. */
  get idle (): boolean {
    return this.tail === SETTLED
  }

  /** Resolves when what was appended so far is in the file. */
  async flushed (): Promise<void> {
    await this.tail
  }

  /** Every frame in the file now, then (until the returned stop) each new one. */
  follow (onFrame: Follower): () => void {
    const seen = new Set<number>()
    const buffered: LogFrame[] = []
    let live = false
    const f: Follower = (frame) => { if (live) { if (!seen.has(frame.seq)) onFrame(frame) } else buffered.push(frame) }
    const followers = (this.followers ??= new Set())
    followers.add(f)
    readFrames(this.file).forEach((frame) => { seen.add(frame.seq); onFrame(frame) })
    live = true
    for (const frame of buffered) if (!seen.has(frame.seq)) onFrame(frame)
    return () => {
      followers.delete(f)
      if (followers.size === 0 && this.followers === followers) this.followers = undefined
    }
  }
}

/** The frames of a log file; a torn last frame (a crash mid-write) is left out. */
export function readFrames (file: string): LogFrame[] {
  let buf: Buffer
  try {
    buf = fs.readFileSync(file)
  } catch {
    return []
  }
  const out: LogFrame[] = []
  for (let off = 0; off + HEADER <= buf.byteLength;) {
    const fd = (buf[off]! & ~OWN_FLAG) === 2 ? 2 : 1
    const len = buf.readUInt32BE(off + 1)
    if (off + HEADER + len > buf.byteLength) break
    const f: LogFrame = { seq: out.length, fd, data: buf.subarray(off + HEADER, off + HEADER + len) }
    if ((buf[off]! & OWN_FLAG) !== 0) f.own = true
    out.push(f)
    off += HEADER + len
  }
  return out
}
