/**
 * The executor makes its persistent copy of a workspace match a tree. Only what differs from
 * `base` (what the copy held after its last sync) is touched: removed paths go, directories
 * are made, changed files are rewritten whole (temp + rename, mode, mtime) or, for a big file
 * whose chunks kept their lengths, patched in place (patch-file.ts), symlinks are made
 * with their target as is. Unchanged files keep their inode and mtime, so a build in the copy
 * sees them as up to date.
 *
 * Contract with the caller: `base` must describe the disk. Record `next` as the new base only
 * once this resolves; after a failure (or if the record is lost) pass `base` undefined, and
 * the copy is checked against `next` from scratch: whatever is on disk and not in `next` is
 * removed (a half-written copy must not leak stale files into the next task) and every file is
 * rewritten. The same holds if a command ran in the copy since: its base is then what the
 * copy holds after the command (the outputs scan), not the tree that was synced before it.
 *
 * Safety: the tree's names are checked first; every path is resolved with a safe resolver
 * (no parent may be a symlink or a non-directory: ERR_UNSAFE_PATH) and symlinks are created
 * last, so nothing is ever written through a link, whether it was on disk already or the tree
 * just made it. A link whose target leaves the copy is kept as a link, never followed.
 */
import fs from 'node:fs/promises'
import { renameSync } from 'node:fs'
import path from 'node:path'
import { createSafeResolver } from './paths.js'
import { diffTrees } from './diff.js'
import { assertTreeNames, planChanges } from './plan-changes.js'
import { runPool } from './run-pool.js'
import { removeTree } from './remove-tree.js'
import { checkSmallFile, discardTemp, isCode, writeTempFile, writeTempLink } from './write-file.js'
import { WRITER_CONCURRENCY, type FileWriter } from './file-writer.js'
import { patchFile } from './patch-file.js'
import type { ChunkReader, DirNode, FileNode, Node } from './types.js'

/** Files written at once: small files pipeline (creating one costs 160–380 µs on ext4). */
export const MATERIALIZE_CONCURRENCY = 4
/** Modes set exactly (fchmod, no umask): the copy must behave the same on every executor. */
export const FILE_MODE_EXEC = 0o755
export const FILE_MODE_PLAIN = 0o644
/** The temp is private until its final mode is set. */
const TEMP_CREATE_MODE = 0o600

export interface MaterializeProgress {
  /** Files written so far. */
  files: number
  /** Bytes of file content written so far. */
  bytes: number
}

export interface MaterializeOptions {
  signal?: AbortSignal
  /** Called after each chunk and each file written. */
  onProgress?: (p: MaterializeProgress) => void
  /** Files written at once (default MATERIALIZE_CONCURRENCY). */
  concurrency?: number
  /** Told at once of a file that could not be written (the ones in flight still finish before materialize throws). */
  onError?: (err: unknown) => void
  /**
   * Told of each chunk readChunk gave once its bytes are in their file: nothing here holds
   * them any more (the caller may free their buffer). Not told of chunks patched in place.
   */
  written?: (data: Uint8Array) => void
  /**
   * A thread that writes small files (one chunk at most): up to WRITER_CONCURRENCY files are
   * then in flight, of which at most `concurrency` are bigger ones.
   */
  writer?: FileWriter
}

export interface MaterializeResult {
  /** Files and symlinks written. */
  written: number
  /** Paths removed (deletions, and stale entries when there was no base). */
  deleted: number
  /** Bytes of file content written. */
  bytes: number
  /**
   * What it created, relative: directories made, files written anew (not patched in place)
   * and symlinks; with no base, undefined (it may have kept entries of unknown origin),
   * unless the directory was empty. Everything else in the copy was there before, untouched.
   */
  made?: string[]
  /** The directory was empty: `made` is everything in it. */
  fresh?: true
}

export async function materialize (
  dir: string,
  base: DirNode | undefined,
  next: DirNode,
  readChunk: ChunkReader,
  opts: MaterializeOptions = {}
): Promise<MaterializeResult> {
  const { signal } = opts
  signal?.throwIfAborted()
  assertTreeNames(next)
  await fs.mkdir(dir, { recursive: true })
  const result: MaterializeResult = { written: 0, deleted: 0, bytes: 0 }
  const made: string[] = []
  const progress: MaterializeProgress = { files: 0, bytes: 0 }
  // A directory that held nothing: all it holds after is ours, and `made` says all of it.
  const empty = base === undefined && (await fs.readdir(dir)).length === 0
  if (base === undefined && !empty) result.deleted += await removeStale(dir, '', next, signal)
  const plan = planChanges(diffTrees(base, next))
  const resolve = createSafeResolver(dir)

  for (const r of plan.removals) {
    signal?.throwIfAborted()
    const abs = await resolve(r.path)
    // rm looks at the path with lstat: a link is removed, never followed.
    const existed = await exists(abs)
    await removeTree(abs)
    if (existed && !r.replaced) result.deleted++
  }

  for (const d of plan.dirs) {
    signal?.throwIfAborted()
    if (await makeDir(await resolve(d.path))) made.push(d.path)
  }

  const concurrency = opts.concurrency ?? MATERIALIZE_CONCURRENCY
  const writer = opts.writer?.available === true ? opts.writer : undefined
  // with a writer thread, many small files are in flight and the bigger ones take turns
  const bigSlots = new Slots(concurrency)
  await runPool(plan.files, writer !== undefined ? Math.max(concurrency, WRITER_CONCURRENCY * writer.threads) : concurrency, async ({ path: rel, node, old }) => {
    const abs = await resolve(rel)
    const mode = node.exec ? FILE_MODE_EXEC : FILE_MODE_PLAIN
    const onBytes = (n: number): void => {
      result.bytes += n
      progress.bytes += n
      opts.onProgress?.({ ...progress })
    }
    try {
      if (writer !== undefined && node.chunks.length <= 1) {
        onBytes(await writeSmall(writer, abs, node, readChunk, mode, empty, signal, opts.written))
        made.push(rel)
      } else {
        if (writer !== undefined) await bigSlots.take()
        try {
          // A big file whose edit kept its chunks' lengths: only what changed is written.
          if (!await patchFile(abs, old, node, readChunk, mode, onBytes)) {
            const tmp = await writeTempFile(path.dirname(abs), node, readChunk, {
              createMode: TEMP_CREATE_MODE,
              chmod: mode,
              ...(signal !== undefined ? { signal } : {}),
              ...(opts.written !== undefined ? { written: opts.written } : {}),
              onBytes
            })
            await replaceWith(tmp, abs)
            made.push(rel)
          }
        } finally {
          if (writer !== undefined) bigSlots.give()
        }
      }
    } catch (err) {
      opts.onError?.(err)
      throw err
    }
    result.written++
    progress.files++
    opts.onProgress?.({ ...progress })
  }, signal)

  await runPool(plan.links, opts.concurrency ?? MATERIALIZE_CONCURRENCY, async ({ path: rel, node }) => {
    const abs = await resolve(rel)
    await replaceWith(await writeTempLink(path.dirname(abs), node.target), abs)
    made.push(rel)
    result.written++
  }, signal)

  return base === undefined && !empty ? result : { ...result, made, ...(empty ? { fresh: true as const } : {}) }
}

/** A file of one chunk at most, written by the writer's thread; its bytes. */
async function writeSmall (writer: FileWriter, abs: string, node: FileNode, readChunk: ChunkReader, mode: number, fresh: boolean, signal?: AbortSignal, written?: (data: Uint8Array) => void): Promise<number> {
  const data = node.chunks.length === 0 ? new Uint8Array(0) : await readChunk(node.chunks[0]!)
  signal?.throwIfAborted()
  checkSmallFile(node, data)
  const bytes = data.byteLength
  // In a copy that started empty, the file is made where it goes: a rename per file was
  // ~15 % of the writer thread's time in a first sync of 10,000 small files.
  const { tmp } = await writer.write({ dir: path.dirname(abs), abs, data, createMode: TEMP_CREATE_MODE, mode, mtimeMs: node.mtimeMs, fresh })
  // the thread wrote a copy of them
  written?.(data)
  // something the base did not know of sat where the file goes
  if (tmp !== undefined) await replaceWith(tmp, abs)
  return bytes
}

/** At most `n` holders at once; the others wait in order. */
class Slots {
  private readonly waiting: Array<() => void> = []

  constructor (private free: number) {}

  async take (): Promise<void> {
    if (this.free > 0) {
      this.free--
      return
    }
    await new Promise<void>((resolve) => { this.waiting.push(resolve) })
  }

  give (): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.free++
  }
}

/**
 * Renames a finished temp over `abs`. Something the base did not know of may sit there (a
 * directory left by a crash): it goes, since the copy must match the tree.
 */
async function replaceWith (tmp: string, abs: string): Promise<void> {
  try {
    try {
      // blocking: a rename is a few microseconds of metadata, a thread-pool round trip is more
      renameSync(tmp, abs)
    } catch (err) {
      if (!isCode(err, 'EISDIR') && !isCode(err, 'ENOTEMPTY') && !isCode(err, 'EEXIST') && !isCode(err, 'ENOTDIR')) throw err
      await removeTree(abs)
      await fs.rename(tmp, abs)
    }
  } catch (err) {
    await discardTemp(tmp)
    throw err
  }
}

/** Whether it made the directory (false: one was there already). */
async function makeDir (abs: string): Promise<boolean> {
  try {
    await fs.mkdir(abs)
  } catch (err) {
    if (!isCode(err, 'EEXIST')) throw err
    const st = await fs.lstat(abs)
    if (st.isDirectory()) return false
    // A file or link where the tree has a directory: the base did not know of it.
    await fs.rm(abs, { force: true })
    await fs.mkdir(abs)
  }
  return true
}

async function exists (abs: string): Promise<boolean> {
  try {
    await fs.lstat(abs)
    return true
  } catch (err) {
    if (isCode(err, 'ENOENT')) return false
    throw err
  }
}

function sameKind (d: { isDirectory: () => boolean, isFile: () => boolean, isSymbolicLink: () => boolean }, node: Node): boolean {
  switch (node.kind) {
    case 'dir': return d.isDirectory()
    case 'file': return d.isFile()
    case 'link': return d.isSymbolicLink()
  }
}

/**
 * With no base, removes every entry under `rel` that `tree` does not have, or has as another
 * kind (sockets, fifos and temps of a crashed write included); returns how many went. Entries
 * of the right kind stay: diffTrees(undefined, next) rewrites every file and link anyway.
 * The walk never enters a symlink (readdir's types come from lstat semantics).
 */
async function removeStale (root: string, rel: string, tree: DirNode, signal?: AbortSignal): Promise<number> {
  signal?.throwIfAborted()
  const abs = rel === '' ? root : path.join(root, rel)
  let removed = 0
  for (const d of await fs.readdir(abs, { withFileTypes: true })) {
    const childRel = rel === '' ? d.name : `${rel}/${d.name}`
    const node = tree.entries.get(d.name)
    if (node !== undefined && sameKind(d, node)) {
      if (node.kind === 'dir') removed += await removeStale(root, childRel, node, signal)
      continue
    }
    await removeTree(path.join(abs, d.name))
    removed++
  }
  return removed
}
