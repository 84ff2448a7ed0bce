/**
 * The FastCDC 2020 cut loop in plain JS: the reference the WASM loop is tested against, and the
 * fallback where WebAssembly is unavailable.
 *
 * fastcdc-rs rolls two bytes per step, `h = (h << 2) + GEAR_LS[a]` then `h += GEAR[b]`, where
 * GEAR_LS = GEAR << 1. That is exactly two steps of the one-byte gear hash `h = (h << 1) +
 * GEAR[x]`, except that the value seen after the first byte of a pair is doubled, and testing
 * `2h` against `mask << 1` is testing `h` against `mask`. So the cut points are those of the
 * one-byte loop below; only the reported fingerprint needs the doubling (see `fingerprint`).
 *
 * The masks only test bits 0…47, so the hot loop keeps bits 0…60 of the hash as two int32s: the
 * low 29 bits, whose headroom absorbs the carry of one step, and bits 29…60, which wrap freely.
 * An exact 64-bit split with carry detection measured ~20 % slower in V8.
 */
import type { CdcConfig } from './gear.js'

const LOW_BITS = 29
const LOW_MASK = (1 << LOW_BITS) - 1

interface Split29 {
  lo: Int32Array
  hi: Int32Array
  maskS: readonly [number, number]
  maskL: readonly [number, number]
}

const splits = new WeakMap<CdcConfig, Split29>()

/** A [high, low] 64-bit pair as [bits 29…60, bits 0…28]. */
function split ([hi, lo]: readonly [number, number]): [number, number] {
  return [((lo >>> LOW_BITS) | (hi << (32 - LOW_BITS))) | 0, lo & LOW_MASK]
}

function split29 (cfg: CdcConfig): Split29 {
  let s = splits.get(cfg)
  if (s !== undefined) return s
  const lo = new Int32Array(256)
  const hi = new Int32Array(256)
  for (let i = 0; i < 256; i++) [hi[i], lo[i]] = split([cfg.gearHi[i], cfg.gearLo[i]])
  s = { lo, hi, maskS: split(cfg.maskS), maskL: split(cfg.maskL) }
  splits.set(cfg, s)
  return s
}

/**
 * Scans the `n` bytes at `data[start]` (the caller has capped n at max and knows n > min) and
 * returns the relative cut: the offset of the first byte whose hash matches, else n.
 * Bytes [min, center) are tested against the harder mask, [center, n) against the easier one,
 * with every bound rounded down to even as fastcdc-rs's two-byte loop does.
 */
export function cutJs (data: Uint8Array, start: number, n: number, cfg: CdcConfig): number {
  const s = split29(cfg)
  const lo = s.lo
  const hi = s.hi
  let i = start + (cfg.min & ~1)
  const mid = start + (Math.min(cfg.avg, n) & ~1)
  const stop = start + (n & ~1)
  let l = 0
  let h = 0
  let ml = s.maskS[1]
  let mh = s.maskS[0]
  // Two bytes per iteration: the ranges have even lengths, and it halves the loop overhead.
  for (; i < mid; i += 2) {
    let b = data[i]
    l = (l << 1) + lo[b]
    h = ((h << 1) + hi[b] + (l >>> LOW_BITS)) | 0
    l &= LOW_MASK
    if ((l & ml) === 0 && (h & mh) === 0) return i - start
    b = data[i + 1]
    l = (l << 1) + lo[b]
    h = ((h << 1) + hi[b] + (l >>> LOW_BITS)) | 0
    l &= LOW_MASK
    if ((l & ml) === 0 && (h & mh) === 0) return i + 1 - start
  }
  ml = s.maskL[1]
  mh = s.maskL[0]
  for (; i < stop; i += 2) {
    let b = data[i]
    l = (l << 1) + lo[b]
    h = ((h << 1) + hi[b] + (l >>> LOW_BITS)) | 0
    l &= LOW_MASK
    if ((l & ml) === 0 && (h & mh) === 0) return i - start
    b = data[i + 1]
    l = (l << 1) + lo[b]
    h = ((h << 1) + hi[b] + (l >>> LOW_BITS)) | 0
    l &= LOW_MASK
    if ((l & ml) === 0 && (h & mh) === 0) return i + 1 - start
  }
  return n
}

/**
 * The 64-bit value fastcdc-rs reports with a chunk, for the chunk `data[start, start + cut)` of
 * a scan of `n` bytes: 0 when nothing was hashed (n ≤ min), else the gear hash through the last
 * byte hashed, doubled when that byte was the first of a pair. Only the last 64 bytes hashed
 * count (older ones are shifted out), so this costs at most 64 steps.
 */
export function fingerprint (data: Uint8Array, start: number, n: number, cut: number, cfg: CdcConfig): bigint {
  const first = cfg.min & ~1
  if (n <= cfg.min) return 0n
  const found = cut < n
  const last = found ? cut : (n & ~1) - 1
  if (last < first) return 0n
  let l = 0
  let h = 0
  for (let i = Math.max(first, last - 63); i <= last; i++) {
    const b = data[start + i]
    const a = l << 1
    const g = cfg.gearLo[b]
    const sum = (a + g) | 0
    // Carry out of the low word: set when both top bits are set, or one is and the sum's isn't.
    const carry = ((a & g) | ((a | g) & ~sum)) >>> 31
    h = (((h << 1) | (l >>> 31)) + cfg.gearHi[b] + carry) | 0
    l = sum
  }
  const v = (BigInt(h >>> 0) << 32n) | BigInt(l >>> 0)
  return found && (cut & 1) === 0 ? BigInt.asUintN(64, v << 1n) : v
}
