/**
 * The submitter takes what a command changed on the executor back into the user's real
 * workspace. The changes are diffTrees(snapshot, result); before each one, the local path is
 * compared with the snapshot (local-state.ts: type, size, mtime, exec bit, link target). If the
 * user changed it since the snapshot, theirs is kept: an incoming file or link is written
 * beside it as `NAME.vgrid-conflict-<taskId>` (an incoming directory as a directory of that
 * name, its whole content under it), an incoming delete leaves it alone; either way it is
 * reported. Ignored paths are never written nor deleted. A directory is removed only once it
 * is empty: files the snapshot did not have (ignored ones) keep it.
 *
 * Each file and link appears whole or not at all (temp in its directory, mode, mtime, rename);
 * the apply as a whole is not transactional: stopped half-way, some paths are new and some old.
 * Running it again with the same arguments completes it: a path already as the result has it
 * is skipped, a delete of a path already gone is a no-op, so that neither is seen as a conflict.
 *
 * Safety: a result with a name no scan could make (`..`, separators, NUL, absolute paths) is an
 * attack: ERR_UNSAFE_PATH is thrown before anything is written. A path that is fine as text
 * but would pass through a symlink or a non-directory of the user's workspace, or a symlink
 * whose target leaves the workspace, is refused alone (listed in `refused`), and the rest goes
 * on. Local I/O errors tied to one path (permission denied, …) are refused the same way;
 * anything else (disk full, a chunk that cannot be read, abort) stops the apply.
 *
 * The check and the rename are not one atomic step: a save that lands between them (after the
 * temp is written, a re-lstat narrows this to microseconds) can still be replaced.
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import { VgridError } from '../common/errors.js'
import { createLogger } from '../common/log.js'
import { diffTrees } from './diff.js'
import { checkRelPath, isEscapingLink, safeResolve } from './paths.js'
import { assertTreeNames, planChanges, type Addition } from './plan-changes.js'
import { runPool } from './run-pool.js'
import { discardTemp, isCode, writeTempFile, writeTempLink } from './write-file.js'
import { localMatches, lstatOrUndefined, modeWithExec, sameStat } from './local-state.js'
import { conflictRelPath, Placement } from './placement.js'
import type { ChunkReader, DirNode, FileNode, LinkNode } from './types.js'

const log = createLogger('fs-sync')

/** Files written at once. */
export const APPLY_CONCURRENCY = 4
/** Task ids go into file names: short and of plain characters only. */
const TASK_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
/** Modes for new files; the user's umask applies, as for any file they create. */
const NEW_FILE_MODE = 0o666
const NEW_EXEC_MODE = 0o777
/** Errors that concern one path of the user's workspace, not the apply as a whole. */
const PER_PATH_ERRNOS = new Set(['EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'ENOTEMPTY', 'EEXIST', 'ENAMETOOLONG', 'ELOOP', 'ENOENT', 'EROFS', 'EBUSY', 'ETXTBSY'])

export interface ApplyOutputsOptions {
  /** Names conflict copies; letters, digits, '.', '_', '-', at most 64. */
  taskId: string
  /** Whether a path is excluded from sync; parents are asked first, as a walk would. */
  isIgnored?: (relPath: string, isDir: boolean) => boolean
  signal?: AbortSignal
  /**
   * Told of each conflict; `conflictPath` (relative) is undefined for a delete that was not
   * done; `deletedHere` when the user had deleted the path the command changed.
   */
  onConflict?: (relPath: string, conflictPath: string | undefined, deletedHere: boolean) => void
  /**
   * When the scan that made `snapshot` started (ms since the epoch). Files it recorded as
   * modified within RACY_WINDOW_MS of then are compared by content, not by size and mtime.
   */
  snapshotStartedMs?: number
}

export interface ApplyConflict {
  /** The path the user changed (relative, '/'-separated); their version is kept there. */
  path: string
  /** Where the command's version was written; absent for a delete that was not done. */
  conflictPath?: string
  /** The user deleted the path while the command changed it: it stays deleted here. */
  deletedHere?: true
}

export interface ApplyRefusal {
  path: string
  reason: string
}

export interface ApplyOutputsResult {
  /** Files and symlinks written (relative paths, sorted). */
  written: string[]
  /** Files, symlinks and (emptied) directories removed. */
  deleted: string[]
  conflicts: ApplyConflict[]
  /** Paths not applied because writing them would not be safe, or the local disk said no. */
  refused: ApplyRefusal[]
}

function gone (rel: string): string {
  return `its directory ${JSON.stringify(path.posix.dirname(rel))} was removed here meanwhile`
}

export async function applyOutputs (
  workspace: string,
  snapshot: DirNode,
  result: DirNode,
  readChunk: ChunkReader,
  opts: ApplyOutputsOptions
): Promise<ApplyOutputsResult> {
  const { signal } = opts
  signal?.throwIfAborted()
  if (!TASK_ID_RE.test(opts.taskId)) throw new VgridError('ERR_BAD_ARGUMENT', `a task id unfit for a file name: ${JSON.stringify(opts.taskId.slice(0, 80))}`)
  // A result with an impossible name is hostile: refuse all of it before touching anything.
  assertTreeNames(result)
  const plan = planChanges(diffTrees(snapshot, result))
  for (const a of [...plan.removals, ...plan.dirs, ...plan.files, ...plan.links]) checkRelPath(a.path)

  const out: ApplyOutputsResult = { written: [], deleted: [], conflicts: [], refused: [] }
  const place = new Placement(opts.isIgnored)
  const match = opts.snapshotStartedMs !== undefined ? { scanStartedMs: opts.snapshotStartedMs } : {}
  const conflict = (p: string, conflictPath?: string, deletedHere = false): void => {
    out.conflicts.push({ path: p, ...(conflictPath !== undefined ? { conflictPath } : {}), ...(deletedHere ? { deletedHere } : {}) })
    opts.onConflict?.(p, conflictPath, deletedHere)
  }
  const refuse = (p: string, reason: string): void => {
    out.refused.push({ path: p, reason })
    place.refuse(p)
  }
  // A chunk that cannot be had is not a problem of one local path: it stops the apply.
  const fromReader = new WeakSet<object>()
  const reader: ChunkReader = async (ref) => {
    try {
      return await readChunk(ref)
    } catch (err) {
      if (typeof err === 'object' && err !== null) fromReader.add(err)
      throw err
    }
  }
  /** Runs one path's step; a problem of that path alone becomes a refusal. */
  const attempt = async (rel: string, step: () => Promise<void>): Promise<void> => {
    try {
      await step()
    } catch (err) {
      if (typeof err === 'object' && err !== null && fromReader.has(err)) throw err
      const code = (err as { code?: unknown }).code
      const perPath = (err instanceof VgridError && code === 'ERR_UNSAFE_PATH') || (typeof code === 'string' && PER_PATH_ERRNOS.has(code))
      if (!perPath) throw err
      refuse(rel, (err as Error).message)
    }
  }

  // A path that only goes away is removed last, once every file is written: a file the
  // command renamed or copied is then still here to read its chunks from, instead of them all
  // travelling back (bringBack reads chunks the workspace has from where the scan saw them).
  // What a new node replaces, and all below it, must go first.
  // A link that leaves the workspace is refused below. What it would replace (the user's file
  // or directory) must then stay as it was: removing it first, as a replacement does, lost it.
  const refusedLinks = new Set(plan.links.filter((a) => a.node.kind === 'link' && isEscapingLink(a.path, a.node.target)).map((a) => a.path))
  plan.removals = plan.removals.filter((r) => !atOrUnder(refusedLinks, r.path))
  const replaced = new Set(plan.removals.filter((r) => r.replaced).map((r) => r.path))
  const removeNow = plan.removals.filter((r) => atOrUnder(replaced, r.path))
  const removeLast = plan.removals.filter((r) => !atOrUnder(replaced, r.path))

  const remove = async (r: typeof plan.removals[number]): Promise<void> => {
    signal?.throwIfAborted()
    if (place.ignored(r.path, r.old.kind === 'dir')) return
    await attempt(r.path, async () => {
      const abs = await safeResolve(workspace, r.path)
      const st = await lstatOrUndefined(abs)
      if (st === undefined) return // gone here too: nothing to do
      if (r.old.kind === 'dir' && st.isDirectory()) {
        try {
          await fs.rmdir(abs)
          out.deleted.push(r.path)
        } catch (err) {
          // Files the snapshot did not have (ignored, or new here) keep their directory.
          if (!isCode(err, 'ENOTEMPTY') && !isCode(err, 'EEXIST')) throw err
          log.debug('kept a directory that is not empty', r.path)
        }
      } else if (await localMatches(abs, st, r.old, match)) {
        await fs.unlink(abs)
        out.deleted.push(r.path)
      } else if (!r.replaced) {
        // A replaced path's new node finds the local one in its way and reports it there.
        conflict(r.path)
      }
    })
  }
  for (const r of removeNow) await remove(r)

  for (const d of plan.dirs) {
    signal?.throwIfAborted()
    if (place.ignored(d.path, true)) continue
    await attempt(d.path, async () => {
      const to = place.target(d.path)
      if ('refusedParent' in to) return refuse(d.path, `its directory ${JSON.stringify(to.refusedParent)} was not applied`)
      const abs = await safeResolve(workspace, to.rel)
      const st = await lstatOrUndefined(abs)
      if (st === undefined) {
        try {
          await fs.mkdir(abs)
        } catch (err) {
          if (isCode(err, 'ENOENT')) return refuse(d.path, gone(to.rel))
          throw err
        }
      } else if (!st.isDirectory()) {
        const crel = conflictRelPath(to.rel, opts.taskId)
        const cabs = await safeResolve(workspace, crel)
        await fs.mkdir(cabs).catch(async (err: unknown) => {
          if (!isCode(err, 'EEXIST') || !(await fs.lstat(cabs)).isDirectory()) throw err
        })
        place.redirect(d.path, crel)
        conflict(to.rel, crel)
      }
    })
  }

  const applyLeaf = async (a: Addition<FileNode> | Addition<LinkNode>): Promise<void> => {
    if (place.ignored(a.path, false)) return
    await attempt(a.path, async () => {
      const to = place.target(a.path)
      if ('refusedParent' in to) return refuse(a.path, `its directory ${JSON.stringify(to.refusedParent)} was not applied`)
      const node = a.node
      const abs = await safeResolve(workspace, to.rel)
      const before = await lstatOrUndefined(abs)
      if (node.kind === 'link' && isEscapingLink(to.rel, node.target)) {
        throw new VgridError('ERR_UNSAFE_PATH', `refusing ${JSON.stringify(to.rel)}: a symlink to ${JSON.stringify(node.target)} leaves the workspace` +
          (before !== undefined ? '; yours was left as it was' : ''))
      }
      // Already applied (a rerun). By content: a command may rewrite a file keeping its size
      // and mtime, and then only the bytes tell the result from what is here.
      if (await localMatches(abs, before, node, { content: true })) return
      // Under a directory written as a conflict copy, nothing was there before.
      const ours = await localMatches(abs, before, to.redirected ? undefined : a.old, match)
      const dir = path.dirname(abs)
      let tmp: string
      try {
        tmp = node.kind === 'link'
          ? await writeTempLink(dir, node.target)
          : await writeTempFile(dir, node, reader, {
            createMode: node.exec ? NEW_EXEC_MODE : NEW_FILE_MODE,
            ...(ours && before?.isFile() === true ? { chmod: modeWithExec(before.mode, node.exec) } : {}),
            ...(signal !== undefined ? { signal } : {})
          })
      } catch (err) {
        // The user removed the directory meanwhile: not ours to make again.
        if (isCode(err, 'ENOENT') && await lstatOrUndefined(dir) === undefined) return refuse(a.path, gone(to.rel))
        throw err
      }
      try {
        // Looked at again as late as possible: a save while we wrote makes it a conflict.
        if (ours && sameStat(before, await lstatOrUndefined(abs))) {
          await fs.rename(tmp, abs)
          out.written.push(to.rel)
        } else {
          const crel = conflictRelPath(to.rel, opts.taskId)
          const now = await lstatOrUndefined(abs)
          await fs.rename(tmp, await safeResolve(workspace, crel))
          // gone here (it was there in the snapshot, or it would be ours): the user deleted it
          conflict(to.rel, crel, before === undefined && now === undefined)
        }
      } catch (err) {
        await discardTemp(tmp)
        throw err
      }
    })
  }
  await runPool(plan.files, APPLY_CONCURRENCY, applyLeaf, signal)
  // Links last: no write of ours follows one, so none can pass through a link just made.
  await runPool(plan.links, APPLY_CONCURRENCY, applyLeaf, signal)
  for (const r of removeLast) await remove(r)

  const byPath = (a: { path: string }, b: { path: string }): number => a.path < b.path ? -1 : a.path > b.path ? 1 : 0
  out.written.sort()
  out.deleted.sort()
  out.conflicts.sort(byPath)
  out.refused.sort(byPath)
  return out
}

/** Whether `p` or one of its parent directories is in `paths` (relative, '/'-separated). */
function atOrUnder (paths: ReadonlySet<string>, p: string): boolean {
  for (let q = p; ; q = q.slice(0, q.lastIndexOf('/'))) {
    if (paths.has(q)) return true
    if (!q.includes('/')) return false
  }
}
