/**
 * FastCDC 2020 content-defined chunking, bit-exact with the Bazel Remote Execution API's
 * `FAST_CDC_2020` and fastcdc-rs `v2020` (normalisation level 2), plus file chunking with
 * SHA-256 naming.
 *
 * Two engines give identical cuts: a WebAssembly loop (cut-wasm.ts, ~4.5× faster) used for
 * whole buffers and files, and a plain JS loop (cut-js.ts) used by `nextCut`, which scans the
 * caller's memory in place, and wherever WebAssembly is missing. The optional `engine`
 * arguments pick one (tests, benchmarks).
 */
import { VgridError } from '../common/errors.js'
import { cdcConfig, DEFAULT_CDC, type CdcParams } from './gear.js'
import { cutJs, fingerprint } from './cut-js.js'
import { cutSource, type CdcEngine } from './cut-window.js'

export { DEFAULT_CDC, type CdcParams }
export type { CdcEngine }
export { chunkFile, chunkFileSync, type ChunkFileOptions } from './chunk-file.js'

let lastFp = 0n

/**
 * The 64-bit gear hash fastcdc-rs reports with the chunk that the last successful `nextCut`
 * cut (0 for a tail of at most `min` bytes). Only for tests and diagnostics.
 */
export function lastFingerprint (): bigint {
  return lastFp
}

function checkRange (data: Uint8Array, start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end || end > data.length) {
    throw new VgridError('ERR_BAD_ARGUMENT', `FastCDC: bad range [${start}, ${end}) of ${data.length} bytes`)
  }
}

/**
 * The end (absolute offset) of the chunk that starts at `data[start]`, looking at no byte past
 * `end`. The chunk is at most `max` long, and shorter than `min` only at the end of input
 * (`eof`). Returns -1 when more data is needed: not at eof, no boundary found, and fewer than
 * `max` bytes available. Returns `start` when start = end at eof (nothing left).
 * A boundary found in a partial window is final: feeding more data never moves it.
 */
export function nextCut (data: Uint8Array, start: number, end: number, eof: boolean, p: CdcParams = DEFAULT_CDC): number {
  checkRange(data, start, end)
  const cfg = cdcConfig(p)
  const n = Math.min(end - start, cfg.max)
  if (n <= cfg.min) {
    // fastcdc-rs does not hash a tail of at most min bytes: it is one chunk, fingerprint 0.
    if (!eof && n < cfg.max) return -1
    lastFp = 0n
    return start + n
  }
  const cut = cutJs(data, start, n, cfg)
  // No boundary in n < max bytes: more data could still hold one, unless there is none.
  if (cut === n && !eof && n < cfg.max) return -1
  lastFp = fingerprint(data, start, n, cut, cfg)
  return start + cut
}

/** The chunks of a whole buffer, in order, covering it exactly; none for an empty one. */
export function chunkBuffer (data: Uint8Array, p: CdcParams = DEFAULT_CDC, engine?: CdcEngine): Array<{ offset: number, length: number }> {
  const out: Array<{ offset: number, length: number }> = []
  let read = 0
  let offset = 0
  cutSource(
    (buf, at, len) => {
      // one copy into the engine's window: ~10 GB/s, noise beside the cut itself
      const n = Math.min(len, data.length - read)
      buf.set(data.subarray(read, read + n), at)
      read += n
      return n
    },
    cdcConfig(p),
    (_buf, _start, length) => {
      out.push({ offset, length })
      offset += length
    },
    engine)
  return out
}
