/**
 * The FastCDC 2020 cut loop in WebAssembly (scripts/build-cdc-wasm.mjs has the listing): native
 * 64-bit arithmetic makes it ~5× the JS loop, which matters because chunking shares two cores
 * with SHA-256 and the network.
 *
 * The loop reads its input from its own memory, so a caller reads files straight into
 * `buf` (a view of that memory) and copies nothing. Each window owns an instance, so that
 * concurrent chunkFile calls cannot clobber each other's data; idle instances are pooled.
 */
import type { CdcConfig } from './gear.js'
import { CUT_WASM_BASE64 } from './cut-wasm-bin.js'

/** Offsets in the module's memory; must match scripts/build-cdc-wasm.mjs. */
const GEAR_AT = 0
const GEAR_LS_AT = 2048
const MASKS_AT = 4096
const FINGERPRINT_AT = 4128
const DATA_AT = 8192
const WASM_PAGE_BYTES = 65536
/** Idle instances kept for reuse; each holds its window's memory (~4.3 MiB by default). */
const POOL_MAX_IDLE = 2

type CutFn = (p: number, n: number, min: number, avg: number) => number

let compiled: WebAssembly.Module | null | undefined

function wasmModule (): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(Buffer.from(CUT_WASM_BASE64, 'base64'))
    } catch {
      compiled = null // no WebAssembly here (e.g. --jitless): the JS loop takes over
    }
  }
  return compiled
}

export function wasmAvailable (): boolean {
  return wasmModule() !== null
}

/** The tables and masks of `cfg` as the module's memory image [0, FINGERPRINT_AT). */
function tableImage (cfg: CdcConfig): Uint8Array {
  const image = new DataView(new ArrayBuffer(FINGERPRINT_AT))
  const put = (at: number, hi: number, lo: number): void => {
    image.setInt32(at, lo, true)
    image.setInt32(at + 4, hi, true)
  }
  // v << 1 on a [hi, lo] pair
  const shl1 = (hi: number, lo: number): [number, number] => [(hi << 1) | (lo >>> 31), lo << 1]
  for (let b = 0; b < 256; b++) {
    const hi = cfg.gearHi[b]
    const lo = cfg.gearLo[b]
    put(GEAR_AT + 8 * b, hi, lo)
    put(GEAR_LS_AT + 8 * b, ...shl1(hi, lo))
  }
  put(MASKS_AT, ...shl1(...cfg.maskS))
  put(MASKS_AT + 8, ...cfg.maskS)
  put(MASKS_AT + 16, ...shl1(...cfg.maskL))
  put(MASKS_AT + 24, ...cfg.maskL)
  return new Uint8Array(image.buffer)
}

const images = new WeakMap<CdcConfig, Uint8Array>()

export class WasmCutter {
  readonly #memory: WebAssembly.Memory
  readonly #cut: CutFn
  #cfg: CdcConfig | undefined
  /** The data area: bytes to cut go here, at the offsets given to `cut`. */
  buf: Uint8Array = new Uint8Array(0)

  constructor (module: WebAssembly.Module) {
    const instance = new WebAssembly.Instance(module, {})
    this.#memory = instance.exports.memory as WebAssembly.Memory
    this.#cut = instance.exports.cut as CutFn
  }

  /** Loads cfg's tables and makes `buf` at least `capacity` bytes. */
  prepare (cfg: CdcConfig, capacity: number): void {
    const need = DATA_AT + capacity
    const have = this.#memory.buffer.byteLength
    if (need > have) this.#memory.grow(Math.ceil((need - have) / WASM_PAGE_BYTES))
    // grow() detaches the old buffer, so the view is rebuilt every time
    this.buf = new Uint8Array(this.#memory.buffer, DATA_AT, capacity)
    if (this.#cfg !== cfg) {
      let image = images.get(cfg)
      if (image === undefined) images.set(cfg, image = tableImage(cfg))
      new Uint8Array(this.#memory.buffer, 0, image.length).set(image)
      this.#cfg = cfg
    }
  }

  /** Relative cut of the n bytes at buf[start]; the caller guarantees min < n ≤ max. */
  cut (start: number, n: number): number {
    const cfg = this.#cfg as CdcConfig
    return this.#cut(DATA_AT + start, n, cfg.min, cfg.avg)
  }

  /** The fastcdc-rs fingerprint of the last cut. */
  fingerprint (): bigint {
    return new DataView(this.#memory.buffer).getBigUint64(FINGERPRINT_AT, true)
  }
}

const idle: WasmCutter[] = []

/** A cutter for cfg with a data area of `capacity` bytes, or null without WebAssembly. */
export function acquireWasmCutter (cfg: CdcConfig, capacity: number): WasmCutter | null {
  const module = wasmModule()
  if (module === null) return null
  const cutter = idle.pop() ?? new WasmCutter(module)
  cutter.prepare(cfg, capacity)
  return cutter
}

export function releaseWasmCutter (cutter: WasmCutter): void {
  if (idle.length < POOL_MAX_IDLE) idle.push(cutter)
}
