#!/usr/bin/env node
/**
 * XSalsa20 with WebAssembly SIMD, four 64-byte blocks at a time, for the private-network layer.
 *
 * @libp2p/pnet encrypts every byte between agents with the `xsalsa20` package, whose scalar
 * WebAssembly runs at ~440 MB/s here: the largest single cost of a big workspace sync on both
 * ends. This module is wire-identical (same key stream) and about 3x faster. It ships as a
 * file added to `xsalsa20` by patches/xsalsa20+1.2.0.patch, which makes that package use it
 * when the engine has SIMD and keeps its own code otherwise.
 *
 *   node scripts/build-salsa-wasm.mjs          # rewrite node_modules/xsalsa20/simd.js
 *   npx patch-package xsalsa20                 # then record it in the patch
 *   node scripts/build-salsa-wasm.mjs --check  # exit 1 if the installed file is stale (a unit test)
 *
 * The exported function, as WAT:
 *   (func (export "xor") (param $st i32) (param $in i32) (param $out i32) (param $n i32)
 * XORs $n × 256 bytes at $in with the key stream into $out. $st holds the 16-word Salsa20
 * input block (constants, subkey, nonce, 64-bit block counter at words 8–9); the counter is
 * advanced by 4 per 256 bytes and stored back. The four blocks live in the four lanes of each
 * vector ("word w of blocks 0–3"), so rounds need no shuffles; one 4×4 transpose per output row.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { I32, I64, V128, VOID, section, sleb, str, uleb, vec } from './wasm-encoding.mjs'

const OUT = fileURLToPath(new URL('../node_modules/xsalsa20/simd.js', import.meta.url))


const simd = (code, ...imm) => [0xfd, ...uleb(code), ...imm]
const op = {
  block: () => [0x02, VOID], loop: () => [0x03, VOID], end: () => [0x0b], br_if: (d) => [0x0d, ...uleb(d)],
  get: (x) => [0x20, ...uleb(x)], set: (x) => [0x21, ...uleb(x)], tee: (x) => [0x22, ...uleb(x)],
  i32_load: (off) => [0x28, 2, ...uleb(off)], i64_load: (off) => [0x29, 3, ...uleb(off)], i64_store: (off) => [0x37, 3, ...uleb(off)],
  i32: (v) => [0x41, ...sleb(v)], i64: (v) => [0x42, ...sleb(v)],
  i32_eqz: () => [0x45], i32_add: () => [0x6a], i32_sub: () => [0x6b],
  i64_add: () => [0x7c], i64_shr_u: () => [0x88], i32_wrap_i64: () => [0xa7],
  v128_load: (off) => simd(0x00, 0, ...uleb(off)), v128_store: (off) => simd(0x0b, 0, ...uleb(off)),
  v128_const: (bytes) => simd(0x0c, ...bytes), shuffle: (lanes) => simd(0x0d, ...lanes),
  i32x4_splat: () => simd(0x11), i32x4_lt_u: () => simd(0x3a),
  v128_or: () => simd(0x50), v128_xor: () => simd(0x51),
  i32x4_shl: () => simd(0xab), i32x4_shr_u: () => simd(0xad), i32x4_add: () => simd(0xae), i32x4_sub: () => simd(0xb1)
}

// ---- locals --------------------------------------------------------------------------------
const [st, inp, out, n] = [0, 1, 2, 3]
const J = (w) => 4 + w // the input block, word w of the four blocks
const X = (w) => 20 + w // the working state
const U = 36
const T = (k) => 37 + k
const CTR = 41 // i64
const R = 42 // i32: double rounds left

// b ^= rotl(a + d, r)
const step = (b, a, d, r) => [
  op.get(X(b)), op.get(X(a)), op.get(X(d)), op.i32x4_add(), op.tee(U), op.i32(r), op.i32x4_shl(),
  op.get(U), op.i32(32 - r), op.i32x4_shr_u(), op.v128_or(), op.v128_xor(), op.set(X(b))
]
const quarter = (a, b, c, d) => [step(b, a, d, 7), step(c, b, a, 9), step(d, c, b, 13), step(a, d, c, 18)]
const doubleRound = [
  quarter(0, 4, 8, 12), quarter(5, 9, 13, 1), quarter(10, 14, 2, 6), quarter(15, 3, 7, 11), // columns
  quarter(0, 1, 2, 3), quarter(5, 6, 7, 4), quarter(10, 11, 8, 9), quarter(15, 12, 13, 14) // rows
]
// Byte lanes of i8x16.shuffle picking i32 lanes (0–3 of the first operand, 4–7 of the second).
const lanes32 = (...ls) => ls.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3])
// Row q of the output: words 4q..4q+3 of each block, transposed out of the lanes, XORed in.
const row = (q) => {
  const [a, b, c, d] = [X(4 * q), X(4 * q + 1), X(4 * q + 2), X(4 * q + 3)]
  const code = [
    op.get(a), op.get(b), op.shuffle(lanes32(0, 4, 1, 5)), op.set(T(0)), // a0 b0 a1 b1
    op.get(a), op.get(b), op.shuffle(lanes32(2, 6, 3, 7)), op.set(T(1)), // a2 b2 a3 b3
    op.get(c), op.get(d), op.shuffle(lanes32(0, 4, 1, 5)), op.set(T(2)), // c0 d0 c1 d1
    op.get(c), op.get(d), op.shuffle(lanes32(2, 6, 3, 7)), op.set(T(3)) // c2 d2 c3 d3
  ]
  const picks = [[T(0), T(2), [0, 1, 4, 5]], [T(0), T(2), [2, 3, 6, 7]], [T(1), T(3), [0, 1, 4, 5]], [T(1), T(3), [2, 3, 6, 7]]]
  picks.forEach(([lo, hi, ls], block) => {
    const off = block * 64 + q * 16
    code.push(op.get(out), op.get(lo), op.get(hi), op.shuffle(lanes32(...ls)), op.get(inp), op.v128_load(off), op.v128_xor(), op.v128_store(off))
  })
  return code
}

const body = [
  // The words that are the same in all four blocks.
  ...[0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15].map((w) => [op.get(st), op.i32_load(4 * w), op.i32x4_splat(), op.set(J(w))]),
  op.get(st), op.i64_load(32), op.set(CTR),
  op.block(),
  op.get(n), op.i32_eqz(), op.br_if(0),
  op.loop(),
  // Counters ctr+0..3: low words, and the high word plus one where the low word wrapped.
  op.get(CTR), op.i32_wrap_i64(), op.i32x4_splat(), op.tee(U),
  op.v128_const([0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]), op.i32x4_add(), op.set(J(8)),
  op.get(CTR), op.i64(32), op.i64_shr_u(), op.i32_wrap_i64(), op.i32x4_splat(),
  op.get(J(8)), op.get(U), op.i32x4_lt_u(), op.i32x4_sub(), op.set(J(9)),
  ...Array.from({ length: 16 }, (_, w) => [op.get(J(w)), op.set(X(w))]),
  op.i32(10), op.set(R),
  op.loop(),
  ...doubleRound,
  op.get(R), op.i32(1), op.i32_sub(), op.tee(R), op.br_if(0),
  op.end(),
  ...Array.from({ length: 16 }, (_, w) => [op.get(X(w)), op.get(J(w)), op.i32x4_add(), op.set(X(w))]),
  row(0), row(1), row(2), row(3),
  op.get(CTR), op.i64(4), op.i64_add(), op.set(CTR),
  op.get(inp), op.i32(256), op.i32_add(), op.set(inp),
  op.get(out), op.i32(256), op.i32_add(), op.set(out),
  op.get(n), op.i32(1), op.i32_sub(), op.tee(n), op.br_if(0),
  op.end(),
  op.end(),
  op.get(st), op.get(CTR), op.i64_store(32),
  op.end()
].flat(Infinity)
const locals = vec([[...uleb(37), V128], [...uleb(1), I64], [...uleb(1), I32]])
const code = [...locals, ...body]

const module = [
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32], [I32]]), ...vec([])]])), // type 0
  ...section(3, vec([uleb(0)])), // func 0: type 0
  ...section(5, vec([[0x00, ...uleb(2)]])), // memory 0: 2 pages (state, a 64 KiB window)
  ...section(7, vec([[...str('xor'), 0x00, 0], [...str('memory'), 0x02, 0]])),
  ...section(10, vec([[...uleb(code.length), ...code]]))
]

const b64 = Buffer.from(module).toString('base64')
const js = `'use strict'
// Generated by vgrid's scripts/build-salsa-wasm.mjs (which holds the listing): do not edit.
// XSalsa20 with WebAssembly SIMD, four blocks at a time; the same key stream as index.js.
// Exports null where WebAssembly SIMD is missing (index.js then uses its own code).

var WASM = '${b64}'
var STATE = 0
var DATA = 1024
var WINDOW = 65536
var BLOCKS = 256

var wasm = null
try {
  var bytes = typeof Buffer !== 'undefined' ? Buffer.from(WASM, 'base64') : Uint8Array.from(atob(WASM), function (c) { return c.charCodeAt(0) })
  wasm = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports
} catch (err) {
  wasm = null
}
var mem8 = wasm && new Uint8Array(wasm.memory.buffer)
var mem32 = wasm && new Uint32Array(wasm.memory.buffer, 0, 16)

function word (b, i) {
  return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0
}

/** hsalsa20(nonce, key, sigma) -> 32-byte subkey, as index.js computes it. */
function SIMD (nonce, key, hsalsa20, sigma) {
  var sub = new Uint8Array(32)
  hsalsa20(sub, nonce, key, sigma)
  var s = this._state = new Uint32Array(16)
  s[0] = word(sigma, 0); s[5] = word(sigma, 4); s[10] = word(sigma, 8); s[15] = word(sigma, 12)
  for (var i = 0; i < 4; i++) { s[1 + i] = word(sub, 4 * i); s[11 + i] = word(sub, 16 + 4 * i) }
  s[6] = word(nonce, 16); s[7] = word(nonce, 20)
  sub.fill(0)
  this._ks = new Uint8Array(BLOCKS) // key stream left over from the last call
  this._ksPos = BLOCKS
}

SIMD.prototype._run = function (len) {
  mem32.set(this._state)
  wasm.xor(STATE, DATA, DATA, len / BLOCKS)
  this._state[8] = mem32[8]
  this._state[9] = mem32[9]
}

SIMD.prototype.update = function (input, output) {
  var n = input.length
  var i = 0
  var ks = this._ks
  while (this._ksPos < BLOCKS && i < n) output[i] = input[i++] ^ ks[this._ksPos++]
  while (n - i >= BLOCKS) {
    var len = Math.min(WINDOW, (n - i) - ((n - i) % BLOCKS))
    mem8.set(input.subarray(i, i + len), DATA)
    this._run(len)
    output.set(mem8.subarray(DATA, DATA + len), i)
    i += len
  }
  if (i < n) {
    mem8.fill(0, DATA, DATA + BLOCKS)
    this._run(BLOCKS)
    ks.set(mem8.subarray(DATA, DATA + BLOCKS))
    this._ksPos = 0
    while (i < n) output[i] = input[i++] ^ ks[this._ksPos++]
  }
  mem32.fill(0)
}

SIMD.prototype.finalize = function () {
  this._state.fill(0)
  this._ks.fill(0)
  mem8.fill(0, 0, DATA + WINDOW)
}

module.exports = wasm === null ? null : SIMD
`
if (process.argv.includes('--check')) {
  let old = ''
  try { old = readFileSync(OUT, 'utf8') } catch {}
  if (old !== js) { console.error(`${OUT} is stale: run node scripts/build-salsa-wasm.mjs, then npx patch-package xsalsa20`); process.exit(1) }
} else {
  new WebAssembly.Module(Buffer.from(module)) // refuse to write a module that does not validate
  writeFileSync(OUT, js)
  console.log(`wrote ${OUT} (${module.length} bytes of wasm)`)
}
