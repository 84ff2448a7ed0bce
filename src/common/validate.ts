/**
 * Small validators for messages from peers and the CLI. Each throws ERR_BAD_MESSAGE with the
 * field that failed, so a refused message can be logged with a reason.
 */
import { VgridError } from './errors.js'

export type Obj = Record<string, unknown>

export function bad (what: string): never {
  throw new VgridError('ERR_BAD_MESSAGE', `malformed message: ${what}`)
}

export function obj (v: unknown, what = 'message'): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) bad(`${what} is not a map`)
  return v as Obj
}

export function str (v: unknown, what: string, max = 4096): string {
  if (typeof v !== 'string') bad(`${what} is not a string`)
  if (v.length > max) bad(`${what} is longer than ${max}`)
  return v
}

export function optStr (v: unknown, what: string, max = 4096): string | undefined {
  return v === undefined || v === null ? undefined : str(v, what, max)
}

export function int (v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(`${what} is not an integer in [${min}, ${max}]`)
  return v
}

export function num (v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) bad(`${what} is not a number in [${min}, ${max}]`)
  return v
}

export function bool (v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') bad(`${what} is not a boolean`)
  return v
}

export function bytes (v: unknown, what: string, max: number): Uint8Array {
  if (!(v instanceof Uint8Array)) bad(`${what} is not bytes`)
  if (v.byteLength > max) bad(`${what} is larger than ${max} bytes`)
  return v
}

export function strArray (v: unknown, what: string, maxItems: number, maxLen = 4096): string[] {
  if (!Array.isArray(v)) bad(`${what} is not a list`)
  if (v.length > maxItems) bad(`${what} has more than ${maxItems} items`)
  return v.map((s, i) => str(s, `${what}[${i}]`, maxLen))
}

export function strMap (v: unknown, what: string, maxItems: number, maxLen = 65536): Record<string, string> {
  const o = obj(v, what)
  const keys = Object.keys(o)
  if (keys.length > maxItems) bad(`${what} has more than ${maxItems} entries`)
  const out: Record<string, string> = Object.create(null)
  for (const k of keys) {
    if (k.length > 1024) bad(`${what} has a key longer than 1024`)
    out[k] = str(o[k], `${what}.${k}`, maxLen)
  }
  return out
}

export function oneOf<T extends string> (v: unknown, what: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) bad(`${what} is not one of ${allowed.join(', ')}`)
  return v as T
}
