/**
 * Writing one file or symlink so that it appears whole or not at all: the bytes go to a
 * temporary name in the target's own directory (same filesystem, so rename is atomic), mode
 * and mtime are set on the open handle, and the caller renames the temp over the target.
 * Shared by materialize (the executor's copy) and applyOutputs (the user's workspace).
 *
 * No fsync: a crash can leave a renamed file with missing data on some filesystems. The
 * executor's copy is rebuilt from scratch after a failed sync (its base is recorded only once
 * materialize succeeds), and fsync per file would cost more than creating it does (~160–380 µs
 * a file on ext4, see NOTES-sync.md); the user's workspace gets what any editor's save gives.
 *
 * Callers pass a `dir` that safeResolve has vouched for. The temp is opened with O_EXCL, so a
 * link planted at the temp name is never followed.
 */
import fs from 'node:fs/promises'
import { closeSync, constants, fchmodSync, futimesSync, openSync, unlinkSync, writeSync } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { VgridError } from '../common/errors.js'
import type { ChunkReader, FileNode } from './types.js'

/** Temp names do not derive from the target's name, so a target of 255 bytes still fits. */
export const TEMP_PREFIX = '.vgrid-tmp-'
/**
 * Chunks asked for ahead of the one being written, so the reader (store or network) works
 * while we write; bounds memory to (1 + this) × CHUNK_MAX_BYTES = 4.25 MiB per file.
 */
export const READ_AHEAD_CHUNKS = 16
/**
 * Chunks are written in one writev once this many bytes of them are there: one write per
 * 64 KiB chunk cost a thread-pool round trip each, a fifth of a big file's receive time.
 */
export const WRITE_COALESCE_BYTES = 1024 * 1024
/** Tries at a fresh temp name when one is taken (only a collision or a planted entry). */
const TEMP_NAME_TRIES = 4

export interface TempFileOptions {
  /** Mode the temp is created with; the process umask applies to it. */
  createMode: number
  /** When set, the exact mode set afterwards with fchmod (no umask). */
  chmod?: number
  signal?: AbortSignal
  /** Called after each chunk is written, with its size. */
  onBytes?: (n: number) => void
  /** Told of each chunk readChunk gave once it is written and held here no more. */
  written?: (data: Uint8Array) => void
}

/** Random bytes for temp names, drawn a few KiB at a time (one call per name cost ~11 µs). */
let namePool = Buffer.alloc(0)
let namePos = 0

function tempPath (dir: string): string {
  if (namePos + 8 > namePool.length) {
    namePool = randomBytes(4096)
    namePos = 0
  }
  namePos += 8
  return path.join(dir, TEMP_PREFIX + namePool.toString('hex', namePos - 8, namePos))
}

/** Whether `err` is a Node system error with this errno code. */
export function isCode (err: unknown, code: string): boolean {
  return (err as { code?: unknown } | null)?.code === code
}

async function openTemp (dir: string, mode: number): Promise<{ fh: FileHandle, tmp: string }> {
  for (let i = 1; ; i++) {
    const tmp = tempPath(dir)
    try {
      return { fh: await fs.open(tmp, 'wx', mode), tmp }
    } catch (err) {
      if (!isCode(err, 'EEXIST') || i >= TEMP_NAME_TRIES) throw err
    }
  }
}

/** Writes every byte of `pieces`, in order, from `position` on (writev may write fewer). */
async function writeAll (fh: FileHandle, pieces: Uint8Array[], position: number): Promise<void> {
  let rest = pieces
  while (rest.length > 0) {
    let { bytesWritten } = await fh.writev(rest, position)
    position += bytesWritten
    let i = 0
    while (i < rest.length && bytesWritten >= rest[i]!.byteLength) bytesWritten -= rest[i++]!.byteLength
    rest = rest.slice(i)
    if (bytesWritten > 0) rest[0] = rest[0]!.subarray(bytesWritten)
  }
}

/**
 * Writes `node`'s bytes, chunk by chunk in order, to a new temp file in `dir`; returns its path.
 * Chunks are checked against their declared sizes and the total against node.size, so a
 * truncated or padded file never reaches its real name. On failure the temp is removed.
 */
export async function writeTempFile (dir: string, node: FileNode, readChunk: ChunkReader, opts: TempFileOptions): Promise<string> {
  opts.signal?.throwIfAborted()
  if (node.chunks.length <= 1) {
    const data = node.chunks.length === 0 ? new Uint8Array(0) : await readChunk(node.chunks[0]!)
    opts.signal?.throwIfAborted()
    return writeSmallTemp(dir, node, data, opts)
  }
  const { fh, tmp } = await openTemp(dir, opts.createMode)
  const pending: Array<Promise<Uint8Array>> = []
  let asked = 0
  const askAhead = (): void => {
    while (asked < node.chunks.length && pending.length < READ_AHEAD_CHUNKS) {
      const p = readChunk(node.chunks[asked++]!)
      // A chunk still in flight when we give up must not become an unhandled rejection.
      p.catch(() => {})
      pending.push(p)
    }
  }
  let pos = 0
  let ready: Uint8Array[] = []
  let readyBytes = 0
  const flush = async (): Promise<void> => {
    const pieces = ready
    ready = []
    await writeAll(fh, pieces, pos)
    pos += readyBytes
    readyBytes = 0
    for (const p of pieces) opts.onBytes?.(p.byteLength)
    if (opts.written !== undefined) for (const p of pieces) opts.written(p)
  }
  try {
    askAhead()
    for (const ref of node.chunks) {
      opts.signal?.throwIfAborted()
      const data = await pending.shift()!
      askAhead()
      checkChunkSize(data, ref.size)
      ready.push(data)
      readyBytes += data.byteLength
      if (readyBytes >= WRITE_COALESCE_BYTES) await flush()
    }
    await flush()
    checkFileSize(pos, node)
    if (opts.chmod !== undefined) await fh.chmod(opts.chmod)
    // Last, after every write: a write would move mtime again.
    const mtime = utimeSeconds(node.mtimeMs)
    await fh.utimes(mtime, mtime)
    await fh.close()
  } catch (err) {
    await fh.close().catch(() => {})
    await fs.unlink(tmp).catch(() => {})
    throw err
  }
  return tmp
}

/** A chunk must be as long as the tree says: anything else would shift the rest of the file. */
export function checkChunkSize (data: Uint8Array, expected: number): void {
  if (data.byteLength !== expected) {
    throw new VgridError('ERR_CHUNK_HASH_MISMATCH', `a chunk of ${data.byteLength} bytes came where ${expected} were expected`)
  }
}

function checkFileSize (bytes: number, node: FileNode): void {
  if (bytes !== node.size) {
    throw new VgridError('ERR_BAD_MESSAGE', `a file's chunks add up to ${bytes} bytes, its entry says ${node.size}`)
  }
}

/** Checks a one-chunk file's bytes against its entry: what a small file's write starts with. */
export function checkSmallFile (node: FileNode, data: Uint8Array): void {
  if (node.chunks[0] !== undefined) checkChunkSize(data, node.chunks[0].size)
  checkFileSize(data.byteLength, node)
}

/**
 * A file of one chunk (at most 256 KiB, most files of a source tree) is written with
 * blocking calls once its bytes are in memory: open, write, chmod, utimes and close as five
 * thread-pool round trips cost more than the kernel's work (10,000 small files synced in
 * 3.2–4.2 s instead of 6.2–8.3 s on 2 cores).
 */
function writeSmallTemp (dir: string, node: FileNode, data: Uint8Array, opts: TempFileOptions): string {
  checkSmallFile(node, data)
  const tmp = writeSmallData(dir, data, node.mtimeMs, opts.createMode, opts.chmod)
  opts.onBytes?.(data.byteLength)
  opts.written?.(data)
  return tmp
}

/**
 * Blocking: `data` to a new temp in `dir` with the mode (`chmod`: exact, after the create)
 * and mtime given; returns the temp's path. On failure the temp is removed. Also run by the
 * file writer's thread (file-writer-worker.ts).
 */
export function writeSmallData (dir: string, data: Uint8Array, mtimeMs: number, createMode: number, chmod?: number): string {
  let fd: number | undefined
  let tmp = ''
  for (let i = 1; fd === undefined; i++) {
    tmp = tempPath(dir)
    try {
      fd = openSync(tmp, 'wx', createMode)
    } catch (err) {
      if (!isCode(err, 'EEXIST') || i >= TEMP_NAME_TRIES) throw err
    }
  }
  fillNew(fd, tmp, data, mtimeMs, chmod)
  return tmp
}

/**
 * Blocking: `data` to a new file at `abs` itself, with the mode and mtime given; false (and
 * nothing written) when something is there already. For a copy the sync started empty: no
 * one but the sync looks into it before it is whole, and a sync that fails leaves it with no
 * recorded tree, so the next one rewrites every file (materialize), as after a crash between
 * a temp's write and its rename. O_EXCL and O_NOFOLLOW: a link at `abs` is never followed.
 */
export function writeSmallDataAt (abs: string, data: Uint8Array, mtimeMs: number, createMode: number, chmod?: number): boolean {
  let fd: number
  try {
    fd = openSync(abs, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, createMode)
  } catch (err) {
    if (isCode(err, 'EEXIST')) return false
    throw err
  }
  fillNew(fd, abs, data, mtimeMs, chmod)
  return true
}

/** Writes a file just created (open as `fd` at `p`), sets its mode and mtime, closes it; removes it on failure. */
function fillNew (fd: number, p: string, data: Uint8Array, mtimeMs: number, chmod?: number): void {
  let open = true
  try {
    for (let off = 0; off < data.byteLength;) off += writeSync(fd, data, off, data.byteLength - off, off)
    if (chmod !== undefined) fchmodSync(fd, chmod)
    // last, after every write: a write would move mtime again
    const mtime = utimeSeconds(mtimeMs)
    futimesSync(fd, mtime, mtime)
    open = false
    closeSync(fd)
  } catch (err) {
    if (open) {
      try { closeSync(fd) } catch {}
    }
    try { unlinkSync(p) } catch {}
    throw err
  }
}

/**
 * Seconds for utimes that read back as exactly `mtimeMs` once floored (as the scan does) or
 * rounded. libuv truncates the double it is given: x.123 s is x.12299999… in binary and would
 * read back as x.122. Aiming at the middle of the millisecond keeps both far from an edge
 * (a double near 2^31 s resolves about 0.24 µs).
 */
export function utimeSeconds (mtimeMs: number): number {
  return (mtimeMs + 0.5) / 1000
}

/** Creates a symlink to `target` (as is, never resolved) at a temp name in `dir`. */
export async function writeTempLink (dir: string, target: string): Promise<string> {
  for (let i = 1; ; i++) {
    const tmp = tempPath(dir)
    try {
      await fs.symlink(target, tmp)
      return tmp
    } catch (err) {
      if (!isCode(err, 'EEXIST') || i >= TEMP_NAME_TRIES) throw err
    }
  }
}

/** Removes a temp left by a failed step; a temp that is already gone is fine. */
export async function discardTemp (tmp: string): Promise<void> {
  await fs.unlink(tmp).catch(() => {})
}
