/**
 * Seeded randomness. Streams of draws come from a small PRNG (mulberry32); draws that must not
 * depend on the order events happen in (is this gossip message lost, how long does it take, when
 * does this viewer notice a member is gone) come from a hash of what they are about, so every
 * placer of one scenario sees exactly the same gossip.
 */

/** Returns [0, 1). */
export type Rng = () => number

export function mulberry32 (seed: number): Rng {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A uniform draw in [0, 1) fixed by its four integer arguments (two mixing rounds: it is hot). */
export function hashUnit (a: number, b: number, c: number, d: number): number {
  const h = fmix32(a ^ Math.imul(b, 0xcc9e2d51) ^ Math.imul(c, 0x1b873593))
  return fmix32(h ^ Math.imul(d, 0xe6546b64) ^ Math.imul(b ^ c, 0x27d4eb2f)) / 4294967296
}

/** An independent PRNG for one named purpose of one seed. */
export function stream (seed: number, purpose: number): Rng {
  return mulberry32(Math.floor(hashUnit(seed, purpose, 0x51ed, 0x2701) * 4294967296))
}

export function exponential (rng: Rng, mean: number): number {
  return -Math.log(1 - rng()) * mean
}

/** Log-normal with the given mean and shape (sigma of the underlying normal). */
export function logNormal (rng: Rng, mean: number, sigma: number): number {
  const z = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng())
  return mean * Math.exp(sigma * z - (sigma * sigma) / 2)
}

/** One of `items`, with probability proportional to its `weight`. */
export function pick<T extends { weight: number }> (rng: Rng, items: readonly T[]): T {
  let total = 0
  for (const it of items) total += it.weight
  let x = rng() * total
  for (const it of items) {
    if (x < it.weight) return it
    x -= it.weight
  }
  return items[items.length - 1]
}
