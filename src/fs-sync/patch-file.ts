/**
 * A big file of the executor's copy whose edit kept every chunk's length (a byte changed, not
 * inserted) is patched where it lies: only the chunks that differ are written, at their
 * offsets, instead of the whole file again. A 1-byte edit in a 300 MB file rewrote 300 MB
 * (0.8–1.2 s of the sync on 2 cores); patched, it writes one chunk.
 *
 * Only for the executor's copy (materialize), never for a user's workspace: a patch is not
 * atomic. A sync that fails part way does not record the new tree, and a half-patched file
 * no longer has the stat its record says (its mtime and ctime moved), so the check before the
 * next sync (copy-check.ts) finds it and it is rewritten: it never serves a command.
 *
 * The file on disk must be what the base says (size and mtime), a regular file opened without
 * following a link, and have one name (a hard link elsewhere in the copy would change too).
 * Anything else, and the caller rewrites the file whole.
 */
import { closeSync, constants, fchmodSync, fstatSync, futimesSync, openSync, writeSync } from 'node:fs'
import { floorMs } from './stat-cache.js'
import { hashEquals } from './hash.js'
import { checkChunkSize, utimeSeconds } from './write-file.js'
import type { ChunkReader, FileNode } from './types.js'

/** Smaller files are rewritten whole: a patch saves little and costs an open and a stat. */
export const PATCH_MIN_FILE_BYTES = 1024 * 1024
/** A patch writes at most this share of the file; past it, a rewrite is as cheap. */
export const PATCH_MAX_SHARE = 0.25

/** The chunks (with their offsets) `node` has that `old` has not at the same place, or undefined when a patch does not apply. */
export function patchPlan (old: FileNode | undefined, node: FileNode): Array<{ index: number, offset: number }> | undefined {
  if (old === undefined || node.size < PATCH_MIN_FILE_BYTES || old.size !== node.size || old.chunks.length !== node.chunks.length) return undefined
  const differ: Array<{ index: number, offset: number }> = []
  let offset = 0
  let bytes = 0
  for (let i = 0; i < node.chunks.length; i++) {
    const a = old.chunks[i]!
    const b = node.chunks[i]!
    if (a.size !== b.size) return undefined
    if (!hashEquals(a.hash, b.hash)) {
      differ.push({ index: i, offset })
      bytes += b.size
    }
    offset += b.size
  }
  if (offset !== node.size || bytes > node.size * PATCH_MAX_SHARE) return undefined
  return differ
}

/**
 * Patches `abs` from `old` to `node` in place; resolves false, having written nothing, when
 * the file is not as `old` says or the edit does not suit a patch. `mode`: the exact mode.
 */
export async function patchFile (abs: string, old: FileNode | undefined, node: FileNode, readChunk: ChunkReader, mode: number, onBytes?: (n: number) => void): Promise<boolean> {
  const plan = patchPlan(old, node)
  if (plan === undefined) return false
  let fd: number
  try {
    // O_NONBLOCK: a fifo where the base has a file fails here (ENXIO) instead of waiting for a reader
    fd = openSync(abs, constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch {
    return false
  }
  try {
    const st = fstatSync(fd, { bigint: true })
    if (!st.isFile() || st.nlink !== 1n || st.size !== BigInt(old!.size) || floorMs(st.mtimeNs) !== old!.mtimeMs) return false
    for (const { index, offset } of plan) {
      const ref = node.chunks[index]!
      const data = await readChunk(ref)
      checkChunkSize(data, ref.size)
      for (let off = 0; off < data.byteLength;) off += writeSync(fd, data, off, data.byteLength - off, offset + off)
      onBytes?.(data.byteLength)
    }
    if ((Number(st.mode) & 0o7777) !== mode) fchmodSync(fd, mode)
    // last, after every write: a write would move mtime again
    const mtime = utimeSeconds(node.mtimeMs)
    futimesSync(fd, mtime, mtime)
    return true
  } finally {
    closeSync(fd)
  }
}
