/** Reads a chunk where a scan found it, and returns it only if its bytes still hash to it. */
import fs from 'node:fs/promises'
import { createHash } from 'node:crypto'
import type { ChunkSource } from './types.js'

/**
 * `handle` is an open handle on `src.path` to reuse; without it the file is opened and closed.
 * A file that changed since the scan, or vanished, gives undefined: never wrong bytes.
 */
export async function readChunkAt (src: ChunkSource, hash: Uint8Array, handle?: fs.FileHandle): Promise<Uint8Array | undefined> {
  let fh = handle
  try {
    fh ??= await fs.open(src.path, 'r')
    const buf = Buffer.allocUnsafe(src.size)
    const { bytesRead } = await fh.read(buf, 0, src.size, src.offset)
    if (bytesRead !== src.size) return undefined
    return createHash('sha256').update(buf).digest().equals(hash) ? buf : undefined
  } catch {
    return undefined
  } finally {
    if (handle === undefined) await fh?.close().catch(() => {})
  }
}
