/**
 * The constants of FastCDC 2020 as the Bazel Remote Execution API standardises it
 * (`FAST_CDC_2020`) and fastcdc-rs (`v2020`) implements it, and the parameter checks.
 *
 * GEAR[i] is the high 64 bits (big-endian) of MD5 over **64 bytes all equal to i**. The REAPI
 * text says "MD5 of the byte i", but only the 64-byte form reproduces the published test vectors
 * (it is what fastcdc-rs and the C reference do). The table is derived here, not pasted, so that
 * the gotcha is visible; a unit test pins a few entries against fastcdc-rs.
 *
 * JS has no fast 64-bit integer, so every 64-bit value is kept as two int32 halves.
 */
import { createHash } from 'node:crypto'
import { VgridError } from '../common/errors.js'
import { CHUNK_AVG_BYTES, CHUNK_MAX_BYTES, CHUNK_MIN_BYTES } from './types.js'

/** Bounds on the parameters, from fastcdc-rs (MINIMUM_MIN … MAXIMUM_MAX). */
export const CDC_MIN_LOW_BYTES = 64
export const CDC_MIN_HIGH_BYTES = 1024 * 1024
export const CDC_AVG_LOW_BYTES = 256
export const CDC_AVG_HIGH_BYTES = 4 * 1024 * 1024
export const CDC_MAX_LOW_BYTES = 1024
export const CDC_MAX_HIGH_BYTES = 16 * 1024 * 1024

/** Normalisation level 2: a harder mask (+2 bits) before avg, an easier one (−2 bits) after. */
export const CDC_NORMALIZATION = 2

/**
 * MASKS[b] has b bits set, spread out (the FastCDC paper finds spread bits dedup slightly
 * better). Values 6…17 come from the C reference (destor), the rest from restic-FastCDC; the
 * ones below 5 are padding. As [high 32 bits, low 32 bits].
 */
const MASKS: ReadonlyArray<readonly [number, number]> = [
  [0, 0], [0, 0], [0, 0], [0, 0], [0, 0],
  [0x00000000, 0x01804110], // 5: only used by normalisation level 3
  [0x00000000, 0x01803110], // 64 B
  [0x00000000, 0x18035100], // 128 B
  [0x00000018, 0x00035300], // 256 B
  [0x00000190, 0x00353000], // 512 B
  [0x00005900, 0x03530000], // 1 KiB
  [0x0000d900, 0x03530000], // 2 KiB
  [0x0000d901, 0x03530000], // 4 KiB
  [0x0000d903, 0x03530000], // 8 KiB
  [0x0000d903, 0x13530000], // 16 KiB
  [0x0000d90f, 0x03530000], // 32 KiB
  [0x0000d903, 0x03537000], // 64 KiB
  [0x0000d907, 0x03537000], // 128 KiB
  [0x0000d907, 0x07537000], // 256 KiB
  [0x0000d917, 0x07537000], // 512 KiB
  [0x0000d917, 0x47537000], // 1 MiB
  [0x0000d917, 0x67537000], // 2 MiB
  [0x0000d937, 0x67537000], // 4 MiB
  [0x0000d937, 0x77537000], // 8 MiB
  [0x0000d937, 0x77577000], // 16 MiB
  [0x0000db37, 0x77577000] // only used by normalisation level 3
]

export interface CdcParams {
  /** No chunk is shorter, except the last of a file. */
  min: number
  /** Target size; a power of two (REAPI requires it). */
  avg: number
  /** No chunk is longer. */
  max: number
  /** XORed into the gear tables (fastcdc-rs `with_level_and_seed`); 0 = the standard tables. */
  seed?: number
}

/** The workspace chunking of DESIGN §4: 16 KiB / 64 KiB / 256 KiB, standard tables. */
export const DEFAULT_CDC: Readonly<CdcParams> = Object.freeze({
  min: CHUNK_MIN_BYTES,
  avg: CHUNK_AVG_BYTES,
  max: CHUNK_MAX_BYTES,
  seed: 0
})

/** Params checked and turned into what the cut loops need. */
export interface CdcConfig {
  readonly min: number
  readonly avg: number
  readonly max: number
  readonly seed: number
  /** GEAR[b] ^ seed, low and high halves. */
  readonly gearLo: Int32Array
  readonly gearHi: Int32Array
  /** The mask used before avg (harder) and after it (easier), [high, low]. */
  readonly maskS: readonly [number, number]
  readonly maskL: readonly [number, number]
}

let baseGear: { lo: Int32Array, hi: Int32Array } | undefined

function md5Gear (): { lo: Int32Array, hi: Int32Array } {
  if (baseGear !== undefined) return baseGear
  const lo = new Int32Array(256)
  const hi = new Int32Array(256)
  const input = new Uint8Array(64)
  for (let i = 0; i < 256; i++) {
    input.fill(i)
    const d = createHash('md5').update(input).digest()
    hi[i] = d.readInt32BE(0)
    lo[i] = d.readInt32BE(4)
  }
  baseGear = { lo, hi }
  return baseGear
}

/** Params in use are few; the cap only stops a caller with a fresh seed per call from leaking. */
const CONFIG_CACHE_MAX = 64
const configs = new Map<string, CdcConfig>()

function bad (message: string): never {
  throw new VgridError('ERR_BAD_ARGUMENT', `FastCDC: ${message}`)
}

function checkInt (v: number, what: string, lo: number, hi: number): void {
  if (!Number.isSafeInteger(v) || v < lo || v > hi) bad(`${what} must be an integer in [${lo}, ${hi}], got ${v}`)
}

/** Validates params (ERR_BAD_ARGUMENT) and returns the cached tables and masks for them. */
export function cdcConfig (p: CdcParams): CdcConfig {
  const seed = p.seed ?? 0
  const key = `${p.min}/${p.avg}/${p.max}/${seed}`
  const cached = configs.get(key)
  if (cached !== undefined) return cached
  checkInt(p.min, 'min', CDC_MIN_LOW_BYTES, CDC_MIN_HIGH_BYTES)
  checkInt(p.avg, 'avg', CDC_AVG_LOW_BYTES, CDC_AVG_HIGH_BYTES)
  checkInt(p.max, 'max', CDC_MAX_LOW_BYTES, CDC_MAX_HIGH_BYTES)
  // A seed past 2^53 would lose bits in a JS number; fastcdc-rs takes a u64.
  checkInt(seed, 'seed', 0, Number.MAX_SAFE_INTEGER)
  if ((p.avg & (p.avg - 1)) !== 0) bad(`avg must be a power of two, got ${p.avg}`)
  if (!(p.min <= p.avg && p.avg <= p.max)) bad(`need min ≤ avg ≤ max, got ${p.min} / ${p.avg} / ${p.max}`)
  const bits = Math.log2(p.avg)
  const base = md5Gear()
  const seedLo = seed | 0
  const seedHi = Math.floor(seed / 2 ** 32) | 0
  const gearLo = new Int32Array(256)
  const gearHi = new Int32Array(256)
  for (let i = 0; i < 256; i++) {
    gearLo[i] = base.lo[i] ^ seedLo
    gearHi[i] = base.hi[i] ^ seedHi
  }
  const cfg: CdcConfig = {
    min: p.min,
    avg: p.avg,
    max: p.max,
    seed,
    gearLo,
    gearHi,
    maskS: MASKS[bits + CDC_NORMALIZATION],
    maskL: MASKS[bits - CDC_NORMALIZATION]
  }
  if (configs.size >= CONFIG_CACHE_MAX) configs.clear()
  configs.set(key, cfg)
  return cfg
}
