#!/usr/bin/env node
/**
 * Assembles the FastCDC 2020 cut loop into WebAssembly and writes it, base64, into
 * src/fs-sync/cut-wasm-bin.ts. No toolchain: the module is one small function, so this script
 * encodes it by hand from the listing below (which reads as the WAT it stands for).
 *
 *   node scripts/build-cdc-wasm.mjs          # rewrite the .ts
 *   node scripts/build-cdc-wasm.mjs --check  # exit 1 if the .ts is stale (used by a unit test)
 *
 * Memory layout (shared with cut-wasm.ts):
 *   0     GEAR[256]     i64, little-endian, seed already XORed in
 *   2048  GEAR_LS[256]  GEAR << 1
 *   4096  mask_s << 1, mask_s, mask_l << 1, mask_l   (i64 each)
 *   4128  the fingerprint of the last cut (i64)
 *   8192  data
 *
 * (func (export "cut") (param $p i32) (param $n i32) (param $min i32) (param $avg i32) (result i32)
 * The `n` bytes at $p (min < n ≤ max) are scanned as fastcdc-rs `cut_gear` does, two bytes a
 * step; returns the relative cut (n when no boundary) and stores the hash at 4128.
 * One change of order, not of result: `h + GEAR_LS[a] + GEAR[b]` is summed as
 * `(h << 2) + (GEAR_LS[a] + GEAR[b])`, so the loop-carried chain is one shift and one add.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { I32, I64, VOID, section, sleb, str, uleb, vec } from './wasm-encoding.mjs'

const OUT = fileURLToPath(new URL('../src/fs-sync/cut-wasm-bin.ts', import.meta.url))



// ---- the function ------------------------------------------------------------------------
// params 0..3: p, n, min, avg; locals: i mid stop (i32), h t g (i64), msls ms mlls ml (i64)
const [p, n, min, avg, i, mid, stop, h, t, g, msls, ms, mlls, ml] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
const op = {
  block: () => [0x02, VOID], loop: () => [0x03, VOID], end: () => [0x0b],
  br_if: (d) => [0x0d, ...uleb(d)], return: () => [0x0f], select: () => [0x1b],
  get: (x) => [0x20, ...uleb(x)], set: (x) => [0x21, ...uleb(x)], tee: (x) => [0x22, ...uleb(x)],
  i64_load: (off) => [0x29, 3, ...uleb(off)], i32_load8_u: (off) => [0x2d, 0, ...uleb(off)],
  i64_store: (off) => [0x37, 3, ...uleb(off)],
  i32: (v) => [0x41, ...sleb(v)], i64: (v) => [0x42, ...sleb(v)],
  i32_lt_u: () => [0x49], i32_ge_u: () => [0x4f], i64_eqz: () => [0x50],
  i32_add: () => [0x6a], i32_sub: () => [0x6b], i32_and: () => [0x71], i32_shl: () => [0x74],
  i64_add: () => [0x7c], i64_and: () => [0x83], i64_shl: () => [0x86]
}
const GEAR = 0
const GEAR_LS = 2048
const MASKS = 4096
const FP = 4128

// One two-byte step of phase `lsMask`/`mask`; `dOdd`/`dEven` are the branch depths of the
// found-odd / found-even blocks from inside the loop.
const step = (lsMask, mask, dEven, dOdd) => [
  // t = h << 2; g = GEAR_LS[data[i]]; h = t + g; if ((h & mask_ls) == 0) found at i
  op.get(h), op.i64(2), op.i64_shl(), op.tee(t),
  op.get(i), op.i32_load8_u(0), op.i32(3), op.i32_shl(), op.i64_load(GEAR_LS), op.tee(g),
  op.i64_add(), op.tee(h), op.get(lsMask), op.i64_and(), op.i64_eqz(), op.br_if(dEven),
  // h = t + (g + GEAR[data[i + 1]]); if ((h & mask) == 0) found at i + 1
  op.get(t), op.get(g),
  op.get(i), op.i32_load8_u(1), op.i32(3), op.i32_shl(), op.i64_load(GEAR),
  op.i64_add(), op.i64_add(), op.tee(h), op.get(mask), op.i64_and(), op.i64_eqz(), op.br_if(dOdd)
]
// while (i < limit) { step; i += 2 }   (inside: loop 0, guard block 1, odd 2, even 3)
const phase = (limit, lsMask, mask) => [
  op.block(),
  op.get(i), op.get(limit), op.i32_ge_u(), op.br_if(0),
  op.loop(),
  ...step(lsMask, mask, 3, 2),
  op.get(i), op.i32(2), op.i32_add(), op.tee(i), op.get(limit), op.i32_lt_u(), op.br_if(0),
  op.end(),
  op.end()
]
const body = [
  op.i32(0), op.i64_load(MASKS), op.set(msls),
  op.i32(0), op.i64_load(MASKS + 8), op.set(ms),
  op.i32(0), op.i64_load(MASKS + 16), op.set(mlls),
  op.i32(0), op.i64_load(MASKS + 24), op.set(ml),
  // i = p + (min & ~1); mid = p + (min(avg, n) & ~1); stop = p + (n & ~1)
  op.get(p), op.get(min), op.i32(-2), op.i32_and(), op.i32_add(), op.set(i),
  op.get(p), op.get(avg), op.get(n), op.get(avg), op.get(n), op.i32_lt_u(), op.select(),
  op.i32(-2), op.i32_and(), op.i32_add(), op.set(mid),
  op.get(p), op.get(n), op.i32(-2), op.i32_and(), op.i32_add(), op.set(stop),
  op.block(), // even: found at i
  op.block(), // odd: found at i + 1
  ...phase(mid, msls, ms),
  ...phase(stop, mlls, ml),
  // no boundary: the chunk is all n bytes
  op.i32(0), op.get(h), op.i64_store(FP), op.get(n), op.return(),
  op.end(),
  op.get(i), op.i32(1), op.i32_add(), op.set(i),
  op.end(),
  op.i32(0), op.get(h), op.i64_store(FP), op.get(i), op.get(p), op.i32_sub(),
  op.end()
].flat()
const locals = vec([[...uleb(3), I32], [...uleb(7), I64]])
const code = [...locals, ...body]

const module = [
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32], [I32]]), ...vec([[I32]])]])), // type 0
  ...section(3, vec([uleb(0)])), // func 0: type 0
  ...section(5, vec([[0x00, ...uleb(1)]])), // memory 0: 1 page to start, grown by the host
  ...section(7, vec([[...str('cut'), 0x00, 0], [...str('memory'), 0x02, 0]])),
  ...section(10, vec([[...uleb(code.length), ...code]]))
]

const b64 = Buffer.from(module).toString('base64')
const ts = `// Generated by scripts/build-cdc-wasm.mjs: do not edit. The FastCDC 2020 cut loop, ${module.length} bytes.
export const CUT_WASM_BASE64 =
  '${b64}'
`
if (process.argv.includes('--check')) {
  let old = ''
  try { old = readFileSync(OUT, 'utf8') } catch {}
  if (old !== ts) { console.error(`${OUT} is stale: run node scripts/build-cdc-wasm.mjs`); process.exit(1) }
} else {
  new WebAssembly.Module(Buffer.from(module)) // refuse to write a module that does not validate
  writeFileSync(OUT, ts)
  console.log(`wrote ${OUT} (${module.length} bytes of wasm)`)
}
