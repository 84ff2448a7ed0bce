/**
 * Sizes as people type them (`--mem 16G`, `--gpu-mem 40G`) and as we print them.
 *
 * Units are binary and case-insensitive, whatever the spelling: K = KB = KiB = 2^10,
 * M = 2^20, G = 2^30, T = 2^40, P = 2^50. `16G`, `16GB` and `16GiB` are all 17179869184 bytes.
 * That is what Slurm (`--mem=16G`) and Docker (`--memory 16g`) mean, and what a GPU's memory
 * is quoted in (an "80GB" A100 has 80 GiB), so `--gpu-mem 80G` matches the card.
 * A number without a unit (or with `B`) is bytes; fractions are allowed with a unit (`1.5T`).
 */
import { VgridError } from './errors.js'

const UNIT_BYTES: Record<string, number> = {
  '': 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
  p: 2 ** 50
}

/** Larger than any machine or request we could meet; stops typos such as `16000000T`. */
export const MAX_SIZE_BYTES = 2 ** 52 // 4 PiB, below Number.MAX_SAFE_INTEGER

const ACCEPTED = 'a size such as 512M, 16G, 16GiB, 1.5T or a number of bytes (units are binary: G = 2^30)'

// number, optional spaces, optional unit letter, optional "b" / "ib" (only after a letter for "ib")
const SIZE_RE = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgtp])(i?b)?|b)?$/i

/** Bytes from `512M`, `16G`, `16GB`, `16GiB`, `1.5T`, `1024`; ERR_BAD_ARGUMENT otherwise. */
export function parseSize (input: string | number, what = 'size'): number {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0 || input > MAX_SIZE_BYTES) throw badSize(String(input), what)
    return input
  }
  if (typeof input !== 'string') throw badSize(String(input), what)
  const m = SIZE_RE.exec(input.trim())
  if (m === null) throw badSize(input, what)
  const unit = (m[2] ?? '').toLowerCase()
  const bytes = Math.round(Number(m[1]) * UNIT_BYTES[unit]!)
  // a fraction of a byte ("1.5" with no unit) means the user meant something else
  if (unit === '' && !Number.isInteger(Number(m[1]))) throw badSize(input, what)
  if (!Number.isSafeInteger(bytes) || bytes > MAX_SIZE_BYTES) {
    throw new VgridError('ERR_BAD_ARGUMENT', `${what} "${clip(input)}" is too large (the most is ${formatBytes(MAX_SIZE_BYTES)})`)
  }
  return bytes
}

const FORMAT_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB']

/** `15.6 GiB`, `512 MiB`, `0 B`: one decimal, dropped when it is zero. */
export function formatBytes (n: number): string {
  if (!Number.isFinite(n)) return String(n)
  const sign = n < 0 ? '-' : ''
  let v = Math.abs(n)
  let i = 0
  // promote on the rounded value so 1023.97 KiB prints as 1 MiB, not 1024.0 KiB
  while (i < FORMAT_UNITS.length - 1 && Math.round(v * 10) / 10 >= 1024) { v /= 1024; i++ }
  if (i === 0) return `${sign}${Math.round(v)} B`
  const s = v.toFixed(1)
  return `${sign}${s.endsWith('.0') ? s.slice(0, -2) : s} ${FORMAT_UNITS[i]}`
}

function badSize (input: string, what: string): VgridError {
  return new VgridError('ERR_BAD_ARGUMENT', `${what} "${clip(input)}" is not valid: expected ${ACCEPTED}`)
}

function clip (s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s
}
