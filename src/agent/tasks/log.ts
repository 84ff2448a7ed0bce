/**
 * A task's output log: `$VGRID_HOME/tasks/<id>.log`, frames of [fd: 1 byte][length: 4 bytes
 * BE][data], appended in the order the output came. The fd byte has OWN_FLAG for lines this
 * agent wrote itself (attempt separators, "placing it again"): shown as any other, they are not
 * counted when the owner tells an executor how much of an attempt's output it has (held.ts). Followers get each frame once it is in
 * the file, numbered, so a reader that read the file and then follows misses none and sees
 * none twice.
 */
import fs from 'node:fs'
import path from 'node:path'

export interface LogFrame { seq: number, fd: 1 | 2, data: Uint8Array, own?: boolean }
type Follower = (f: LogFrame) => void

const HEADER = 5
const OWN_FLAG = 0x10

export class TaskLog {
  private tail: Promise<void> = Promise.resolve()
  private frames = 0
  /** Frames appended, counted at once (the file catches up). */
  private appended = 0
  private readonly followers = new Set<Follower>()

  constructor (readonly file: string) {}

  /** Frames already in the file (on open after a restart). */
  static open (dir: string, id: string): TaskLog {
    const log = new TaskLog(path.join(dir, `${id}.log`))
    log.frames = log.appended = readFrames(log.file).length
    return log
  }

  /** How many frames the log holds, counting those not yet written: where the next one goes. */
  get length (): number {
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
    this.appended++
    const frame = Buffer.allocUnsafe(HEADER + data.byteLength)
    frame[0] = own ? fd | OWN_FLAG : fd
    frame.writeUInt32BE(data.byteLength, 1)
    frame.set(data, HEADER)
    this.tail = this.tail.then(async () => {
      await fs.promises.appendFile(this.file, frame)
      const f: LogFrame = { seq: this.frames++, fd, data, ...(own ? { own } : {}) }
      for (const follow of this.followers) follow(f)
    }).catch(() => {})
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
    this.followers.add(f)
    readFrames(this.file).forEach((frame) => { seen.add(frame.seq); onFrame(frame) })
    live = true
    for (const frame of buffered) if (!seen.has(frame.seq)) onFrame(frame)
    return () => { this.followers.delete(f) }
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
