/**
 * Reads a chunk where a scan found it, and returns it only if it is still that chunk: either
 * the file is untouched since the scan read it (its fstat after the read is the one the scan
 * trusted), or its bytes hash to the chunk's name.
 *
 * The first check stands in for the hash on the serving path, where hashing every chunk again
 * cost the submitter ~0.6 s of CPU per 600 MB. It holds because the scan trusts only a stat
 * taken RACY_MARGIN_MS after the file's last change (stat-cache.ts): any write since then
 * moves its ctime, and a stat read after our read shows any write before it.
 */
import fs from 'node:fs'
import { createHash } from 'node:crypto'
import type { ChunkSource, FileStatKey } from './types.js'

/** Whether the open file is still as the scan saw it. */
function untouched (fd: number, key: FileStatKey | undefined): boolean {
  if (key === undefined) return false
  try {
    const st = fs.fstatSync(fd, { bigint: true })
    return st.ino === key.ino && st.size === key.size && st.mtimeNs === key.mtimeNs && st.ctimeNs === key.ctimeNs
  } catch {
    return false
  }
}

/**
 * From `fd`, an open descriptor of `src.path`. Blocking: a chunk is at most 256 KiB and
 * usually in the page cache (a few microseconds), where the promise API cost more than the
 * read itself on the serving path. A file that changed since the scan gives undefined.
 */
export function readChunkFromFd (src: ChunkSource, hash: Uint8Array, fd: number): Uint8Array | undefined {
  try {
    const buf = Buffer.allocUnsafeSlow(src.size)
    if (fs.readSync(fd, buf, 0, src.size, src.offset) !== src.size) return undefined
    if (untouched(fd, src.stat)) return buf
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

/** Open files one caller of readSource keeps. */
const MAX_OPEN_FILES = 32

/**
 * readChunkFromFd, with `files` (path → descriptor) kept open between calls by one serving
 * stream or connection, so a big file's chunks do not reopen it each time; the caller closes
 * them (closeQuietly).
 */
export function readSource (src: ChunkSource, h: Uint8Array, files: Map<string, number>): Uint8Array | undefined {
  let fd = files.get(src.path)
  if (fd === undefined) {
    if (files.size >= MAX_OPEN_FILES) {
      const [oldest, old] = files.entries().next().value as [string, number]
      files.delete(oldest)
      closeQuietly(old)
    }
    try {
      fd = fs.openSync(src.path, 'r')
    } catch {
      return undefined
    }
    files.set(src.path, fd)
  }
  return readChunkFromFd(src, h, fd)
}

export function closeQuietly (fd: number): void {
  try {
    fs.closeSync(fd)
  } catch {}
}
