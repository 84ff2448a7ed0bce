/**
 * A detached run's session on its executor (held.ts): what it keeps while its owner is away,
 * and what it replays when the owner comes back saying how much output it has.
 */
import { describe, it, expect, afterAll, vi } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { memoryChannelPair, type FrameChannel } from '../../src/common/channel.js'
import { HeldRun, HELD_DELIVERED_KEEP_MS, logBytesOf } from '../../src/agent/held.js'
import { waitFor } from '../helpers/procs.js'

const dirs: string[] = []
afterAll(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }) })

function heldRun (limits: { memoryBytes?: number, outputCapBytes?: number } = {}, o: { arm?: boolean, onGone?: () => void } = {}): { run: HeldRun, owner: FrameChannel, dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-held-'))
  dirs.push(dir)
  const [owner, executor] = memoryChannelPair()
  const run = new HeldRun('12D3KooWOwner', '0123456789abcdef', path.join(dir, 'run'), 'exec-host', o.onGone ?? (() => {}), executor, limits)
  if (o.arm !== false) run.arm()
  return { run, owner, dir }
}

const out = (text: string): { t: 'out', fd: 1, data: Uint8Array } => ({ t: 'out', fd: 1, data: Buffer.from(text) })

/** Every event the owner's end receives until it closes. */
async function drain (ch: FrameChannel): Promise<Array<Record<string, unknown>>> {
  const got: Array<Record<string, unknown>> = []
  for (;;) {
    const m = await ch.recv()
    if (m === undefined) return got
    got.push(m as Record<string, unknown>)
    // The owner's word that it has the end: then the executor closes the session.
    const t = (m as { t?: string }).t
    if (t === 'exit' || t === 'error') await ch.send({ t: 'end-seen' })
  }
}

const text = (evs: Array<Record<string, unknown>>): string => evs.filter((e) => e.t === 'out').map((e) => Buffer.from(e.data as Uint8Array).toString()).join('')

describe('a held run', () => {
  it('goes on without its owner and replays what the owner lacks, splitting a chunk where it stopped', async () => {
    const { run, owner } = heldRun()
    await run.send({ t: 'started', pid: 1, peer: 'p', host: 'h', gpus: [] })
    await run.send(out('hello '))
    // The owner goes away: sends no longer fail, and the command is not cancelled.
    owner.destroy()
    await run.send(out('world\n'))
    await run.send({ t: 'sync', phase: 'down', files: 0, totalFiles: 0, sentBytes: 0, sentChunks: 0, totalBytes: 0, reusedBytes: 0, done: true })
    await run.send({ t: 'notice', text: 'a conflict' })
    await run.send({ t: 'exit', code: 0 })
    await run.close()
    expect(run.attached).toBe(false)

    // Back with 8 bytes of output logged ("hello wo"): the rest follows, then the end.
    const [back, theirs] = memoryChannelPair()
    const replay = drain(back)
    await run.attach(theirs, 8)
    const evs = await replay
    expect(evs[0]).toEqual({ t: 'attached' })
    expect(evs.map((e) => e.t)).toEqual(['attached', 'started', 'out', 'notice', 'exit'])
    expect(text(evs)).toBe('rld\n')
    // Progress and outputs offers are never replayed.
    expect(evs.some((e) => e.t === 'sync' || e.t === 'outputs')).toBe(false)
  })

  it('counts a notice as the line the owner logs for it', async () => {
    expect(logBytesOf({ t: 'notice', text: 'x' })).toBe('vgrid: x\n'.length)
    const { run, owner } = heldRun()
    owner.destroy()
    await run.send({ t: 'notice', text: 'first' })
    await run.send(out('after\n'))
    await run.send({ t: 'exit', code: 0 })
    await run.close()
    const [back, theirs] = memoryChannelPair()
    const replay = drain(back)
    await run.attach(theirs, logBytesOf({ t: 'notice', text: 'first' }))
    expect((await replay).map((e) => e.t)).toEqual(['attached', 'out', 'exit'])
  })

  it('spills to disk past its memory bound, and keeps every byte', async () => {
    const { run, owner, dir } = heldRun({ memoryBytes: 64 * 1024 })
    owner.destroy()
    const line = 'x'.repeat(1023) + '\n'
    for (let i = 0; i < 256; i++) await run.send(out(line))
    await run.send({ t: 'exit', code: 0 })
    await run.close()
    expect(fs.statSync(path.join(dir, 'run', 'events')).size).toBeGreaterThan(256 * 1024)
    const [back, theirs] = memoryChannelPair()
    const replay = drain(back)
    await run.attach(theirs, 0)
    expect(text(await replay)).toBe(line.repeat(256))
    run.drop('test over')
    await waitFor(() => !fs.existsSync(path.join(dir, 'run')), 'the dropped run\'s events to be deleted', 5_000, 10)
  })

  it('replays a spill file larger than its read window, frames cut across windows', async () => {
    const { run, owner } = heldRun({ memoryBytes: 64 * 1024 })
    owner.destroy()
    // 4,099-byte lines: frames fall across every 1 MiB boundary of the file
    const lines = Array.from({ length: 800 }, (_, i) => `${String(i).padStart(4, '0')}${'y'.repeat(4094)}\n`)
    for (const l of lines) await run.send(out(l))
    await run.send({ t: 'exit', code: 0 })
    await run.close()
    const [back, theirs] = memoryChannelPair()
    const replay = drain(back)
    await run.attach(theirs, 1000)
    const evs = await replay
    expect(text(evs)).toBe(lines.join('').slice(1000))
    expect(evs.at(-1)).toEqual({ t: 'exit', code: 0 })
    run.drop('test over')
  })

  it('drops output past its cap for an owner away, and says so once', async () => {
    const { run, owner } = heldRun({ outputCapBytes: 10 })
    owner.destroy()
    await run.send(out('0123456789'))
    await run.send(out('lost'))
    await run.send(out('lost too'))
    await run.send({ t: 'exit', code: 0 })
    await run.close()
    const [back, theirs] = memoryChannelPair()
    const replay = drain(back)
    await run.attach(theirs, 0)
    const evs = await replay
    expect(text(evs)).toBe('0123456789')
    expect(evs.filter((e) => e.t === 'notice').map((e) => e.text)).toEqual(['output past 10 B was not kept on exec-host for an owner away'])
  })

  it('passes inputs from whichever owner is attached, and waits while none is', async () => {
    const { run, owner } = heldRun()
    await owner.send({ t: 'signal', sig: 'SIGINT' })
    expect(await run.recv()).toEqual({ t: 'signal', sig: 'SIGINT' })
    owner.destroy()
    const next = run.recv()
    let got: unknown
    void next.then((m) => { got = m })
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(got).toBeUndefined()
    const [back, theirs] = memoryChannelPair()
    void drain(back)
    await run.attach(theirs, 0)
    await back.send({ t: 'cancel' })
    expect(await next).toEqual({ t: 'cancel' })
    expect(await run.whenAttached(10)).toBe(true)
  })

  it('keeps its end for an owner that never said it got it, and forgets it once one does', async () => {
    const { run, owner } = heldRun()
    await run.send(out('line\n'))
    await run.send({ t: 'exit', code: 0 })
    // The owner was attached, but vanished without a word: nothing is forgotten.
    const closing = run.close()
    owner.destroy()
    await closing
    const [back, theirs] = memoryChannelPair()
    const replay = drain(back)
    await run.attach(theirs, 0)
    expect(text(await replay)).toBe('line\n')
    // Said: only the end is kept now.
    const [again, theirs2] = memoryChannelPair()
    const second = drain(again)
    await run.attach(theirs2, 0)
    expect((await second).map((e) => e.t)).toEqual(['attached', 'exit'])
  })

  it('takes the owner\'s word even when it comes before this side has closed', async () => {
    const { run, owner } = heldRun()
    await run.send(out('line\n'))
    await run.send({ t: 'exit', code: 0 })
    // The owner reads the end and answers at once; the executor is still cleaning up.
    const seen = drain(owner)
    await waitFor(async () => await Promise.race([seen.then(() => false), new Promise<boolean>((resolve) => setImmediate(() => { resolve(true) }))]), 'the owner to answer', 1_000, 1)
    const recv = run.recv()
    await new Promise((resolve) => setImmediate(resolve))
    void recv
    await run.close()
    await seen
    const [again, theirs] = memoryChannelPair()
    const replay = drain(again)
    await run.attach(theirs, 0)
    // Delivered: only the end was kept.
    expect((await replay).map((e) => e.t)).toEqual(['attached', 'exit'])
  }, 20_000)

  it('counts the end delivered when the owner said so and closed its stream at once, and forgets it soon', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    try {
      let gone = false
      const { run, owner } = heldRun({}, { onGone: () => { gone = true } })
      await run.send(out('line\n'))
      await run.send({ t: 'exit', code: 0 })
      // What the owner does (run.ts): end-seen, then its end of the stream closes.
      expect((await owner.recv() as { t: string }).t).toBe('out')
      expect((await owner.recv() as { t: string }).t).toBe('exit')
      await owner.send({ t: 'end-seen' })
      await owner.close()
      // The executor's input loop reads both before its own side closes.
      const reading = run.recv()
      await new Promise((resolve) => setImmediate(resolve))
      await run.close()
      expect(await reading).toBeUndefined()
      // Kept a minute for an owner that crashed while saving it, not --keep-results (7 days).
      vi.advanceTimersByTime(HELD_DELIVERED_KEEP_MS + 1)
      expect(gone).toBe(true)
    } finally {
      vi.useRealTimers()
    }
  })

  it('is forgotten at once when its claim never went ahead (refused, or placed elsewhere)', async () => {
    let gone = false
    const { run, owner } = heldRun({}, { arm: false, onGone: () => { gone = true } })
    const said = drain(owner)
    await run.send({ t: 'error', error: { code: 'ERR_NO_CAPACITY', message: 'busy' } })
    await run.close()
    expect(gone).toBe(true)
    expect((await said).map((e) => e.t)).toEqual(['error'])
  })
})
