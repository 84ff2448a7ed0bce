/** What the user reads about a sync: the bar on a terminal, the summary line, silence otherwise. */
import { describe, it, expect } from 'vitest'
import { PassThrough } from 'node:stream'
import { summaryLine, progressLine, formatSize, SyncProgressView, PROGRESS_DELAY_MS } from '../../src/cli/progress.js'

const ev = (over: Record<string, unknown> = {}): any => ({ t: 'sync', phase: 'up', files: 3, totalFiles: 1204, sentBytes: 3_100_000, sentChunks: 3, totalBytes: 6_200_000, reusedBytes: 1.2e9, done: false, ...over })

function stderr (tty: boolean): PassThrough & { isTTY?: boolean, columns?: number, text: () => string } {
  const s = new PassThrough() as any
  let out = ''
  s.on('data', (d: Buffer) => { out += d.toString() })
  s.isTTY = tty
  s.columns = 100
  s.text = () => out
  return s
}

describe('sync progress', () => {
  it('sums up a sync in one line with thousands separators', () => {
    expect(summaryLine(ev())).toBe('synced 1,204 files, 3 chunks (3.1 MB) sent, 1.2 GB reused')
    expect(summaryLine(ev({ totalFiles: 1, sentChunks: 1, sentBytes: 512 }))).toBe('synced 1 file, 1 chunk (512 B) sent, 1.2 GB reused')
    expect(summaryLine(ev({ phase: 'down', totalFiles: 2, sentChunks: 0, sentBytes: 0 }))).toBe('brought back 2 files, 0 chunks (0 B) received')
    expect(formatSize(1_234_567_890)).toBe('1.2 GB')
  })

  it('draws a bar with files, bytes, rate and ETA that fits the terminal', () => {
    const line = progressLine(ev(), 1000, 80)
    expect(line).toMatch(/^\[#+-+\] syncing 3\/1,204 files {2}3\.1 MB\/6\.2 MB {2}3\.1 MB\/s {2}ETA 1s$/)
    expect(line.length).toBeLessThan(80)
  })

  it('shows the bar only after a second on a terminal, and the summary at the end', () => {
    let now = 0
    const err = stderr(true)
    const view = new SyncProgressView(err, false, false, () => now)
    view.update(ev())
    expect(err.text()).toBe('')
    now = PROGRESS_DELAY_MS + 1
    view.update(ev({ files: 600 }))
    expect(err.text()).toMatch(/\r\[#*-*\] syncing 600/)
    view.update(ev({ done: true, files: 1204 }))
    expect(err.text()).toMatch(/\r\x1b\[Kvrun: synced 1,204 files/)
  })

  it('says nothing off a terminal unless verbose, and nothing at all when quiet', () => {
    const plain = stderr(false)
    new SyncProgressView(plain, false).update(ev({ done: true }))
    expect(plain.text()).toBe('')
    const verbose = stderr(false)
    new SyncProgressView(verbose, false, true).update(ev({ done: true }))
    expect(verbose.text()).toBe('vrun: synced 1,204 files, 3 chunks (3.1 MB) sent, 1.2 GB reused\n')
    const quiet = stderr(true)
    new SyncProgressView(quiet, true, true).update(ev({ done: true }))
    expect(quiet.text()).toBe('')
  })
})

describe('sync summary on a terminal', () => {
  it('says nothing when the sync sent nothing and was quick; something sent, or brought back, is said', () => {
    const idle = stderr(true)
    const view = new SyncProgressView(idle, false, false, () => 0)
    view.update(ev({ done: true, sentChunks: 0, sentBytes: 0 }))
    view.update(ev({ done: true, phase: 'down', totalFiles: 0, sentChunks: 0, sentBytes: 0 }))
    expect(idle.text()).toBe('')
    const busy = stderr(true)
    const view2 = new SyncProgressView(busy, false, false, () => 0)
    view2.update(ev({ done: true }))
    view2.update(ev({ done: true, phase: 'down', totalFiles: 1, sentChunks: 0, sentBytes: 0 }))
    expect(busy.text()).toBe('vrun: synced 1,204 files, 3 chunks (3.1 MB) sent, 1.2 GB reused\nvrun: brought back 1 file, 0 chunks (0 B) received\n')
  })
})
