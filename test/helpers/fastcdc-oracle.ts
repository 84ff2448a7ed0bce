/**
 * A line-by-line BigInt transliteration of fastcdc-rs `v2020::cut_gear` (two bytes per step,
 * GEAR_LS table, seed XORed into both tables). Slow and obviously faithful: the oracle the fast
 * loops are compared with on inputs the published vectors do not cover.
 */
import { createHash } from 'node:crypto'

const MASKS = [
  0n, 0n, 0n, 0n, 0n,
  0x0000000001804110n, 0x0000000001803110n, 0x0000000018035100n, 0x0000001800035300n,
  0x0000019000353000n, 0x0000590003530000n, 0x0000d90003530000n, 0x0000d90103530000n,
  0x0000d90303530000n, 0x0000d90313530000n, 0x0000d90f03530000n, 0x0000d90303537000n,
  0x0000d90703537000n, 0x0000d90707537000n, 0x0000d91707537000n, 0x0000d91747537000n,
  0x0000d91767537000n, 0x0000d93767537000n, 0x0000d93777537000n, 0x0000d93777577000n,
  0x0000db3777577000n
]

const U64 = (v: bigint): bigint => BigInt.asUintN(64, v)

export interface OracleChunk { offset: number, length: number, hash: bigint }

export function oracleChunks (src: Uint8Array, min: number, avg: number, max: number, seed = 0n): OracleChunk[] {
  const gear: bigint[] = []
  for (let i = 0; i < 256; i++) {
    gear.push(createHash('md5').update(new Uint8Array(64).fill(i)).digest().readBigUInt64BE(0) ^ seed)
  }
  const gearLs = gear.map((g) => U64(g << 1n))
  const bits = Math.round(Math.log2(avg))
  const maskS = MASKS[bits + 2]
  const maskL = MASKS[bits - 2]
  const maskSLs = maskS << 1n
  const maskLLs = maskL << 1n

  function cut (start: number, sourceLen: number): [bigint, number] {
    let remaining = sourceLen
    if (remaining <= min) return [0n, remaining]
    let center = avg
    if (remaining > max) remaining = max
    else if (remaining < center) center = remaining
    let index = Math.floor(min / 2)
    const limit1 = Math.floor(center / 2)
    const limit2 = Math.floor(remaining / 2)
    let hash = 0n
    while (index < limit1) {
      const a = index * 2
      hash = U64((hash << 2n) + gearLs[src[start + a]])
      if ((hash & maskSLs) === 0n) return [hash, a]
      hash = U64(hash + gear[src[start + a + 1]])
      if ((hash & maskS) === 0n) return [hash, a + 1]
      index++
    }
    while (index < limit2) {
      const a = index * 2
      hash = U64((hash << 2n) + gearLs[src[start + a]])
      if ((hash & maskLLs) === 0n) return [hash, a]
      hash = U64(hash + gear[src[start + a + 1]])
      if ((hash & maskL) === 0n) return [hash, a + 1]
      index++
    }
    return [hash, remaining]
  }

  const out: OracleChunk[] = []
  let offset = 0
  while (offset < src.length) {
    const [hash, length] = cut(offset, src.length - offset)
    out.push({ offset, length, hash })
    offset += length
  }
  return out
}
