/**
 * The private-network cipher: patches/xsalsa20+1.2.0.patch makes the `xsalsa20` package
 * (which @libp2p/pnet uses for every byte between agents) run four blocks at a time with
 * WebAssembly SIMD. Its key stream must be XSalsa20's, exactly, however the data is split;
 * otherwise agents with and without the patch could not talk.
 */
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { xsalsa20 as nobleXsalsa20 } from '@noble/ciphers/salsa.js'
import { ROOT } from '../helpers/procs.js'

const require = createRequire(import.meta.url)
interface Cipher { update: (input: Uint8Array, output?: Uint8Array) => Uint8Array, finalize: () => void }
type Ctor = new (nonce: Uint8Array, key: Uint8Array) => Cipher
const XSalsa20 = require('xsalsa20') as Ctor & { core_hsalsa20: unknown, SIGMA: Uint8Array }
const Simd = require('xsalsa20/simd.js') as (new (nonce: Uint8Array, key: Uint8Array, h: unknown, s: Uint8Array) => Cipher & { _state: Uint32Array }) | null

/** Salsa20's block function, from the specification, for counters past 2^32. */
function salsaBlock (input: Uint32Array): Uint8Array {
  const x = Uint32Array.from(input)
  const r = (a: number, b: number): number => ((a << b) | (a >>> (32 - b))) >>> 0
  const qr = (a: number, b: number, c: number, d: number): void => {
    x[b] ^= r((x[a] + x[d]) >>> 0, 7); x[c] ^= r((x[b] + x[a]) >>> 0, 9)
    x[d] ^= r((x[c] + x[b]) >>> 0, 13); x[a] ^= r((x[d] + x[c]) >>> 0, 18)
  }
  for (let i = 0; i < 10; i++) {
    qr(0, 4, 8, 12); qr(5, 9, 13, 1); qr(10, 14, 2, 6); qr(15, 3, 7, 11)
    qr(0, 1, 2, 3); qr(5, 6, 7, 4); qr(10, 11, 8, 9); qr(15, 12, 13, 14)
  }
  const out = Buffer.alloc(64)
  for (let i = 0; i < 16; i++) out.writeUInt32LE((x[i] + input[i]) >>> 0, 4 * i)
  return out
}

describe('xsalsa20 with WebAssembly SIMD (the pnet cipher)', () => {
  it('is what the patched package uses, and matches its generator', () => {
    expect(Simd).not.toBeNull()
    const c = new XSalsa20(randomBytes(24), randomBytes(32)) as unknown as { _xor: unknown }
    expect(c._xor).toBeInstanceOf(Simd!)
    const check = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build-salsa-wasm.mjs'), '--check'], { encoding: 'utf8' })
    expect(check.stderr).toBe('')
    expect(check.status).toBe(0)
  })

  it('gives the XSalsa20 key stream however the data is split', () => {
    const sizes = [0, 1, 63, 64, 65, 255, 256, 257, 1000, 4096, 65535, 65536, 65537, 200_000]
    for (let round = 0; round < 40; round++) {
      const key = randomBytes(32)
      const nonce = randomBytes(24)
      const cipher = new XSalsa20(nonce, key)
      const pieces = Array.from({ length: 12 }, (_, i) => randomBytes(sizes[(round * 7 + i * 5) % sizes.length]))
      const whole = Buffer.concat(pieces)
      const got = Buffer.concat(pieces.map((p) => Buffer.from(cipher.update(p))))
      // an independent implementation (@noble/ciphers), in one call
      expect(got.equals(Buffer.from(nobleXsalsa20(key, nonce, whole)))).toBe(true)
    }
  })

  it('encrypts in place', () => {
    const key = randomBytes(32)
    const nonce = randomBytes(24)
    const data = randomBytes(70_000)
    const expected = Buffer.from(nobleXsalsa20(key, nonce, data))
    const inPlace = Buffer.from(data)
    new XSalsa20(nonce, key).update(inPlace, inPlace)
    expect(inPlace.equals(expected)).toBe(true)
  })

  it('carries the 64-bit block counter into its high word', () => {
    const c = new Simd!(randomBytes(24), randomBytes(32), XSalsa20.core_hsalsa20, XSalsa20.SIGMA)
    c._state[8] = 0xfffffffe // blocks 2^32 - 2 … 2^32 + 5 cross the carry, inside a quad and between two
    const start = Uint32Array.from(c._state)
    const got = Buffer.alloc(8 * 64)
    c.update(new Uint8Array(8 * 64), got)
    for (let b = 0; b < 8; b++) {
      const input = Uint32Array.from(start)
      const ctr = 0xfffffffe + b
      input[8] = ctr >>> 0
      input[9] = Math.floor(ctr / 2 ** 32)
      expect(got.subarray(64 * b, 64 * b + 64).equals(salsaBlock(input))).toBe(true)
    }
    expect([c._state[8], c._state[9]]).toEqual([6, 1])
  })
})
