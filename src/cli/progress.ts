/**
 * Workspace sync as the user sees it: after a second of syncing, a progress bar on a
 * terminal's stderr (files, bytes, rate, ETA), redrawn in place; at the end one summary line
 * (`synced 1,204 files, 3.1 MB sent, 1.2 GB reused`), when it sent (or brought back)
 * something or the bar was shown. Nothing on a stderr that is not a terminal (scripts keep a
 * clean stderr) unless VGRID_VERBOSE=1 asks for the summary; nothing at all with --quiet.
 */
import type { ExecEvent } from '../protocol/session.js'

type SyncEvent = Extract<ExecEvent, { t: 'sync' }>
type Out = NodeJS.WritableStream & { isTTY?: boolean, columns?: number }

/** Delay before a bar appears: most syncs are done before anyone would read it. */
export const PROGRESS_DELAY_MS = 1_000

/** 1,204 — without Intl: building a NumberFormat loads ICU, ~15 ms on every vrun. */
const num = { format: (n: number): string => String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',') }

export function formatSize (n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB']
  let i = 0
  let v = n
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++ }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`
}

export function summaryLine (e: SyncEvent): string {
  const files = `${num.format(e.totalFiles)} file${e.totalFiles === 1 ? '' : 's'}`
  const chunks = `${num.format(e.sentChunks)} chunk${e.sentChunks === 1 ? '' : 's'} (${formatSize(e.sentBytes)})`
  if (e.phase === 'down') return `brought back ${files}, ${chunks} received`
  return `synced ${files}, ${chunks} sent, ${formatSize(e.reusedBytes)} reused`
}

export function progressLine (e: SyncEvent, elapsedMs: number, width: number): string {
  const rate = elapsedMs > 0 ? e.sentBytes / (elapsedMs / 1000) : 0
  const frac = e.totalBytes > 0 ? Math.min(1, e.sentBytes / e.totalBytes) : e.totalFiles > 0 ? e.files / e.totalFiles : 1
  const eta = rate > 0 && e.totalBytes > e.sentBytes ? Math.ceil((e.totalBytes - e.sentBytes) / rate) : 0
  const text = ` ${e.phase === 'up' ? 'syncing' : 'bringing back'} ${num.format(e.files)}/${num.format(e.totalFiles)} files  ${formatSize(e.sentBytes)}/${formatSize(e.totalBytes)}  ${formatSize(rate)}/s  ETA ${eta}s`
  const barWidth = Math.max(10, Math.min(30, width - text.length - 3))
  const filled = Math.round(frac * barWidth)
  return `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}]${text}`.slice(0, Math.max(20, width - 1))
}

export class SyncProgressView {
  private firstAt: number | undefined
  private drawn = false

  /** `verbose` (VGRID_VERBOSE=1) prints the summary line on any stderr; the bar stays terminal-only. */
  constructor (private readonly stderr: Out, private readonly quiet: boolean, private readonly verbose = false, private readonly now: () => number = Date.now) {}

  update (e: SyncEvent): void {
    if (this.quiet) return
    const tty = this.stderr.isTTY === true
    if (e.done) {
      // On a terminal, only a sync that did something or took long is worth a line: a
      // `synced 0 files` before every command is noise.
      const worth = this.drawn || (e.phase === 'down' ? e.totalFiles > 0 : e.sentChunks > 0)
      this.clear()
      if (this.verbose || (tty && worth)) this.stderr.write(`vrun: ${summaryLine(e)}\n`)
      this.firstAt = undefined
      return
    }
    if (!tty) return
    const t = this.now()
    this.firstAt ??= t
    if (t - this.firstAt < PROGRESS_DELAY_MS) return
    this.stderr.write(`\r${progressLine(e, t - this.firstAt, this.stderr.columns ?? 80)}\x1b[K`)
    this.drawn = true
  }

  /** Removes a bar before anything else is written on stderr. */
  clear (): void {
    if (!this.drawn) return
    this.stderr.write('\r\x1b[K')
    this.drawn = false
  }
}
