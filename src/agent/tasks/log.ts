/**
 * A task's output log: `$VGRID_HOME/tasks/<id>.log`, frames of [fd: 1 byte][length: 4 bytes
 * BE][data], appended in the order the output came. Followers get each frame once it is in
 * the file, numbered, so a reader that read the file and then follows misses none and sees
 * none twice.
 */
import fs from 'node:fs'
import path from 'node:path'

export interface LogFrame { seq: number, fd: 1 | 2, data: Uint8Array }
type Follower = (f: LogFrame) => void

const HEADER = 5

export class TaskLog {
  private tail: Promise<void> = Promise.resolve()
  private frames = 0
  private readonly followers = new Set<Follower>()

  constructor (readonly file: string) {}

  /** Frames already in the file (on open after a restart). */
  static open (dir: string, id: string): TaskLog {
    const log = new TaskLog(path.join(dir, `${id}.log`))
    log.frames = readFrames(log.file).length
    return log
  }

  append (fd: 1 | 2, data: Uint8Array): void {
    if (data.byteLength === 0) return
    const frame = Buffer.allocUnsafe(HEADER + data.byteLength)
    frame[0] = fd
    frame.writeUInt32BE(data.byteLength, 1)
    frame.set(data, HEADER)
    this.tail = this.tail.then(async () => {
      await fs.promises.appendFile(this.file, frame)
      const f: LogFrame = { seq: this.frames++, fd, data }
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
    const fd = buf[off] === 2 ? 2 : 1
    const len = buf.readUInt32BE(off + 1)
    if (off + HEADER + len > buf.byteLength) break
    out.push({ seq: out.length, fd, data: buf.subarray(off + HEADER, off + HEADER + len) })
    off += HEADER + len
  }
  return out
}
