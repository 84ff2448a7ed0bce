/**
 * A file's chunks: FastCDC 2020 cuts, each named by its SHA-256 (node:crypto uses the CPU's SHA
 * extensions, ~1.4–1.65 GB/s; WASM and JS hashes are slower, NOTES-sync.md).
 *
 * A file that grows or shrinks while it is read is cut as far as the reads reach: the result
 * describes the bytes read, and the caller's stat-before/stat-after check decides whether to
 * trust it.
 */
import { createHash } from 'node:crypto'
import { closeSync, openSync, readSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { cdcConfig, DEFAULT_CDC, type CdcParams } from './gear.js'
import { cutSource, cutSourceAsync, type CdcEngine, type OnChunk } from './cut-window.js'
import type { ChunkRef } from './types.js'

export interface ChunkFileOptions {
  signal?: AbortSignal
  /** Called with the size of each chunk once it is hashed, for progress. */
  onBytes?: (n: number) => void
  /** Default 'wasm' (the JS loop where WebAssembly is missing); tests and benchmarks pick. */
  engine?: CdcEngine
}

function hasher (out: ChunkRef[], onBytes?: (n: number) => void): OnChunk {
  return (buf, start, length) => {
    const d = createHash('sha256').update(buf.subarray(start, start + length)).digest()
    // a plain Uint8Array over the digest's own 32-byte buffer (digests are not pooled)
    out.push({ hash: new Uint8Array(d.buffer, d.byteOffset, d.byteLength), size: length })
    onBytes?.(length)
  }
}

/** The chunks of the file at `path`; none for an empty file. Yields to the event loop between 4 MiB reads. */
export async function chunkFile (path: string, p: CdcParams = DEFAULT_CDC, opts: ChunkFileOptions = {}): Promise<ChunkRef[]> {
  const cfg = cdcConfig(p)
  opts.signal?.throwIfAborted()
  const out: ChunkRef[] = []
  const fh = await open(path, 'r')
  try {
    await cutSourceAsync(
      async (buf, at, len) => (await fh.read(buf, at, len, null)).bytesRead,
      cfg, hasher(out, opts.onBytes), opts.signal, opts.engine)
  } finally {
    await fh.close()
  }
  return out
}

/** chunkFile, blocking: for small files, where a promise per file costs more than the read. */
export function chunkFileSync (path: string, p: CdcParams = DEFAULT_CDC, opts: { engine?: CdcEngine } = {}): ChunkRef[] {
  const cfg = cdcConfig(p)
  const out: ChunkRef[] = []
  const fd = openSync(path, 'r')
  try {
    cutSource((buf, at, len) => readSync(fd, buf, at, len, null), cfg, hasher(out), opts.engine)
  } finally {
    closeSync(fd)
  }
  return out
}

/**
 * The chunks of the bytes of `path` from `from` on, cut as if a chunk began there, reading no
 * further than `limit` (or to the end of the file): one segment of a big file cut by several
 * threads (segments.ts joins them). `eof`: the read reached the end of the file (else the
 * last chunk ends at `limit` only because the read stopped there).
 */
export function chunkRangeSync (path: string, from: number, limit: number, p: CdcParams = DEFAULT_CDC): { refs: ChunkRef[], eof: boolean } {
  const cfg = cdcConfig(p)
  const refs: ChunkRef[] = []
  const fd = openSync(path, 'r')
  let pos = from
  let eof = false
  try {
    cutSource((buf, at, len) => {
      const want = Math.min(len, limit - pos)
      if (want <= 0) return 0
      const n = readSync(fd, buf, at, want, pos)
      if (n < want) eof = true
      pos += n
      return n
    }, cfg, hasher(refs))
  } finally {
    closeSync(fd)
  }
  return { refs, eof }
}
