import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { Session, removeTempDirs, run, tempDir, waitFor } from '../helpers/exec-session.js'

afterEach(removeTempDirs)

const MiB = 1024 * 1024

function sha256 (b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex')
}

/** A file of `bytes` random bytes and its hash, written in pieces. */
function randomFile (dir: string, bytes: number): { file: string, hash: string } {
  const file = path.join(dir, 'data.bin')
  const h = createHash('sha256')
  const fd = fs.openSync(file, 'w')
  for (let left = bytes; left > 0; left -= 4 * MiB) {
    const piece = randomBytes(Math.min(4 * MiB, left))
    h.update(piece)
    fs.writeSync(fd, piece)
  }
  fs.closeSync(fd)
  return { file, hash: h.digest('hex') }
}

/** Bytes a process has written so far (Linux /proc/PID/io). */
function written (pid: number): number {
  try {
    return Number(/wchar: (\d+)/.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0)
  } catch {
    return -1 // exited
  }
}

describe('serveExec output', () => {
  it('delivers 100 MB to a slow reader complete and in order, holding the command back', async () => {
    const dir = tempDir()
    const total = 100 * 1000 * 1000
    const { file, hash } = randomFile(dir, total)
    const s = new Session(['cat', file], { autoRead: false })
    const first = await s.next()
    expect(first?.t).toBe('started')
    const pid = (first as { pid: number }).pid

    const h = createHash('sha256')
    let received = 0
    let maxAhead = 0
    let maxArrayBuffers = 0
    let messages = 0
    for (;;) {
      const raw = await s.client.recv()
      const ev = raw as { t: string, fd?: number, data?: Uint8Array }
      if (ev.t === 'exit') { expect(ev).toEqual({ t: 'exit', code: 0 }); break }
      expect(ev.t).toBe('out')
      expect(ev.fd).toBe(1)
      expect(ev.data!.byteLength).toBeLessThanOrEqual(MiB)
      h.update(ev.data!)
      received += ev.data!.byteLength
      // A slow reader: it yields to the timers now and then, so the command runs far ahead
      // of it unless backpressure holds it.
      if (++messages % 8 === 0) {
        const w = written(pid)
        if (w >= 0) maxAhead = Math.max(maxAhead, w - received)
        maxArrayBuffers = Math.max(maxArrayBuffers, process.memoryUsage().arrayBuffers)
        await delay(1)
      }
    }
    expect(received).toBe(total)
    expect(h.digest('hex')).toBe(hash)
    // Pipe (64 KiB) + one chunk in flight + the channel's 64 queued messages of ≤ 64 KiB.
    expect(maxAhead).toBeLessThan(16 * MiB)
    expect(maxArrayBuffers).toBeLessThan(96 * MiB)
    console.log(`100 MB: at most ${(maxAhead / MiB).toFixed(1)} MiB ahead of the reader, arrayBuffers peak ${(maxArrayBuffers / MiB).toFixed(1)} MiB`)
    expect(await s.result).toMatchObject({ exitCode: 0, cancelled: false })
  })

  it('loses nothing when a command writes 5 MB and exits at once, even to a slow reader', async () => {
    const dir = tempDir()
    const { file, hash } = randomFile(dir, 5 * 1000 * 1000)
    for (const script of [`cat '${file}'; exit 0`, `cat '${file}' >&2 & cat '${file}'; wait; exit 4`]) {
      for (const slow of [false, true]) {
        // The slow reader keeps the pipe full, so the command exits with output still unread.
        const s = new Session(['sh', '-c', script], { autoRead: !slow, highWater: slow ? 4 : undefined })
        if (slow) {
          for (let n = 0; ; n++) {
            const ev = await s.next()
            if (ev === undefined || ev.t === 'exit' || ev.t === 'error') break
            if (n % 4 === 0) await delay(1)
          }
        }
        await s.ended
        const r = await s.result
        expect(sha256(s.bytes(1))).toBe(hash)
        if (r.exitCode === 4) expect(sha256(s.bytes(2))).toBe(hash)
        expect(s.events.at(-1)?.t).toBe('exit')
      }
    }
  })

  it('forwards 20 MB of stdin with backpressure', async () => {
    const s = new Session(['sha256sum'])
    const h = createHash('sha256')
    for (let i = 0; i < 20; i++) {
      const chunk = randomBytes(MiB)
      h.update(chunk)
      await s.send({ t: 'stdin', data: chunk })
    }
    await s.send({ t: 'eof' })
    await s.ended
    expect(s.stdout().split(' ')[0]).toBe(h.digest('hex'))
  })

  it('sends started before any output', async () => {
    const { s } = await run(['sh', '-c', 'echo a; echo b >&2'])
    expect(s.events.map((e) => e.t)).toEqual(['started', ...s.events.slice(1, -1).map(() => 'out'), 'exit'])
    await waitFor(() => s.exit(), 'the exit')
  })
})
