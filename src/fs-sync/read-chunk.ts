/** Reads a chunk where a scan found it, and returns it only if its bytes still hash to it. */
import fs from 'node:fs'
import { createHash } from 'node:crypto'
import type { ChunkSource } from './types.js'

/**
 * From `fd`, an open descriptor of `src.path`. Blocking: a chunk is at most 256 KiB and
 * usually in the page cache (a few microseconds), where the promise API cost more than the
 * read itself on the serving path. A file that changed since the scan gives undefined.
 */
export function readChunkFromFd (src: ChunkSource, hash: Uint8Array, fd: number): Uint8Array | undefined {
  try {
    const buf = Buffer.allocUnsafeSlow(src.size)
    if (fs.readSync(fd, buf, 0, src.size, src.offset) !== src.size) return undefined
    return createHash('sha256').update(buf).digest().equals(hash) ? buf : undefined
  } catch {
    return undefined
  }
}

/** Opens `src.path` for one chunk; a file that changed since the scan, or vanished, gives undefined. */
export async function readChunkAt (src: ChunkSource, hash: Uint8Array): Promise<Uint8Array | undefined> {
  let fd: number | undefined
  try {
    fd = fs.openSync(src.path, 'r')
    return readChunkFromFd(src, hash, fd)
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}
