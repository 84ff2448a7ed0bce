/**
 * Deterministic noise (xorshift32): bytes that look random to a chunker, the same in every
 * run, so that a count that depends on where the content's cut points fall reproduces, and no
 * case is left to luck.
 */
export function noise (n: number, seed = 0): Buffer {
  const b = Buffer.allocUnsafe(n)
  let x = (0x9e3779b9 ^ Math.imul(seed + 1, 0x85ebca6b)) | 0
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    b[i] = x >>> 24
  }
  return b
}
