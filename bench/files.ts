/** Test data for the benchmarks. */
import fs from 'node:fs'
import { randomFillSync } from 'node:crypto'

/** A file of `size` random bytes (nothing in it compresses or repeats). */
export function randomFile (file: string, size: number): void {
  const fd = fs.openSync(file, 'w')
  const buf = Buffer.allocUnsafe(4 * 2 ** 20)
  for (let left = size; left > 0;) {
    const n = Math.min(left, buf.length)
    randomFillSync(buf, 0, n)
    fs.writeSync(fd, buf, 0, n)
    left -= n
  }
  fs.closeSync(fd)
}
