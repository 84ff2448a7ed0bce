/**
 * The loop that cuts a stream of bytes through one reused buffer (a "window"), whichever engine
 * does the cutting. Reading into a reused buffer matters: readSync into 4 MiB is ~23 GB/s from
 * the page cache, readFileSync ~1.45 GB/s (NOTES-sync.md).
 *
 * The window always holds at least `max` bytes past the current chunk start until the source
 * ends, so every cut is final the first time it is computed and no byte is scanned twice.
 */
import type { CdcConfig } from './gear.js'
import { cutJs, fingerprint } from './cut-js.js'
import { acquireWasmCutter, releaseWasmCutter, type WasmCutter } from './cut-wasm.js'

/** Bytes read per block: big enough that per-call costs vanish, small enough to yield often. */
export const CDC_BLOCK_BYTES = 4 * 1024 * 1024

export type CdcEngine = 'wasm' | 'js'

/** Idle JS windows kept, so that chunking many small files does not zero 4 MiB each time. */
const POOL_MAX_IDLE = 2
let idleJs: Uint8Array[] = []

export interface CutWindow {
  /** Fill this; chunks are reported as ranges of it. */
  readonly buf: Uint8Array
  /** Relative cut of the n bytes at buf[start], min < n ≤ max. */
  cut: (start: number, n: number) => number
  /** The fastcdc-rs fingerprint of the last cut (tests). */
  fingerprint: () => bigint
  release: () => void
}

/** A window of `capacity` bytes; the WASM engine unless asked otherwise or unavailable. */
export function openWindow (cfg: CdcConfig, capacity: number, engine: CdcEngine = 'wasm'): CutWindow {
  const wasm: WasmCutter | null = engine === 'wasm' ? acquireWasmCutter(cfg, capacity) : null
  if (wasm !== null) {
    return {
      buf: wasm.buf,
      cut: (start, n) => wasm.cut(start, n),
      fingerprint: () => wasm.fingerprint(),
      release: () => releaseWasmCutter(wasm)
    }
  }
  const buf = idleJs.find((b) => b.length === capacity) ?? new Uint8Array(capacity)
  idleJs = idleJs.filter((b) => b !== buf)
  let last = { start: 0, n: 0, cut: 0 }
  return {
    buf,
    cut: (start, n) => {
      const cut = cutJs(buf, start, n, cfg)
      last = { start, n, cut }
      return cut
    },
    fingerprint: () => fingerprint(buf, last.start, last.n, last.cut, cfg),
    release: () => { if (idleJs.length < POOL_MAX_IDLE) idleJs.push(buf) }
  }
}

/** Called for each chunk, in order; `buf` is only valid during the call. */
export type OnChunk = (buf: Uint8Array, start: number, length: number) => void

/** The chunk-cutting state over one window, advanced by the sync and async drivers below. */
class Cursor {
  start = 0
  end = 0
  eof = false
  constructor (readonly win: CutWindow, readonly cfg: CdcConfig) {}

  /** True when the window needs more bytes before the next cut is final. */
  get hungry (): boolean {
    return !this.eof && this.end - this.start < this.cfg.max
  }

  /** Moves the unread tail (< max bytes) to the front; returns where and how much to read. */
  room (): [number, number] {
    if (this.start > 0) {
      this.win.buf.copyWithin(0, this.start, this.end)
      this.end -= this.start
      this.start = 0
    }
    return [this.end, this.win.buf.length - this.end]
  }

  got (n: number): void {
    if (n === 0) this.eof = true
    else this.end += n
  }

  /** Cuts every chunk that is final with the bytes at hand. */
  drain (onChunk: OnChunk): void {
    const { min, max } = this.cfg
    while (!this.hungry && this.start < this.end) {
      const n = Math.min(this.end - this.start, max)
      // fastcdc-rs does not scan a tail of at most min bytes: it is one (short) chunk
      const len = n <= min ? n : this.win.cut(this.start, n)
      onChunk(this.win.buf, this.start, len)
      this.start += len
    }
  }
}

function capacityFor (cfg: CdcConfig): number {
  return CDC_BLOCK_BYTES + cfg.max
}

/** Cuts what `read(buf, at, len)` supplies (0 = end) and reports each chunk. */
export function cutSource (read: (buf: Uint8Array, at: number, len: number) => number, cfg: CdcConfig,
  onChunk: OnChunk, engine?: CdcEngine): void {
  const win = openWindow(cfg, capacityFor(cfg), engine)
  try {
    const c = new Cursor(win, cfg)
    while (c.hungry || c.start < c.end) {
      if (c.hungry) c.got(read(win.buf, ...c.room()))
      c.drain(onChunk)
    }
  } finally {
    win.release()
  }
}

/** cutSource with an async reader; the event loop runs between blocks. */
export async function cutSourceAsync (read: (buf: Uint8Array, at: number, len: number) => Promise<number>,
  cfg: CdcConfig, onChunk: OnChunk, signal?: AbortSignal, engine?: CdcEngine): Promise<void> {
  const win = openWindow(cfg, capacityFor(cfg), engine)
  try {
    const c = new Cursor(win, cfg)
    while (c.hungry || c.start < c.end) {
      signal?.throwIfAborted()
      if (c.hungry) c.got(await read(win.buf, ...c.room()))
      c.drain(onChunk)
    }
  } finally {
    win.release()
  }
}
