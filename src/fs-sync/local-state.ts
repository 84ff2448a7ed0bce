/**
 * Whether a path of the user's workspace still holds what a tree says it held, decided the way
 * rsync's quick check does: type, size, mtime (and the exec bit; a link's target). Reading
 * every file the command changed would cost as much as the sync itself, and an edit that keeps
 * both size and mtime is what `cp -p`, `touch -r` or an archive does, not a person.
 *
 * One case the quick check misses is the "racy" one git knows: a file saved again within the
 * same timestamp tick as the scan that recorded it. A file whose recorded mtime is that close
 * to the scan is checked by content instead (its bytes hashed along its recorded chunk bounds),
 * so an edit made right after `vrun` started is never overwritten unseen.
 */
import fs from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { createHash } from 'node:crypto'
import { hashEquals } from './hash.js'
import { isCode } from './write-file.js'
import { CHUNK_MAX_BYTES, type FileNode, type Node } from './types.js'

/**
 * Recorded mtimes this close to (or after) the start of the scan are not trusted alone: it
 * covers coarse timestamps (1–2 s on FAT and some network filesystems, a few ms on ext4).
 */
export const RACY_WINDOW_MS = 2000

export async function lstatOrUndefined (abs: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(abs)
  } catch (err) {
    if (isCode(err, 'ENOENT')) return undefined
    throw err
  }
}

/** Exec as the scan records it: the owner's execute bit. */
export function isExecMode (mode: number): boolean {
  return (mode & 0o100) !== 0
}

/** Node keeps sub-millisecond mtimes; trees keep whole ones (truncated or rounded). */
export function sameMtime (statMtimeMs: number, treeMtimeMs: number): boolean {
  return Math.abs(statMtimeMs - treeMtimeMs) < 1
}

/** The mode for `exec` keeping the rest of an existing file's permissions. */
export function modeWithExec (mode: number, exec: boolean): number {
  const perms = mode & 0o777
  return exec ? perms | ((perms & 0o444) >> 2) : perms & ~0o111
}

export interface MatchOptions {
  /** Start of the scan that recorded `node`: a racy file is then checked by content. */
  scanStartedMs?: number
  /** A file whose stat matches is always checked by content too. */
  content?: boolean
}

/**
 * Whether `st` (lstat of `abs`, undefined when absent) is what `node` describes; `node`
 * undefined means "nothing there".
 */
export async function localMatches (abs: string, st: Stats | undefined, node: Node | undefined, opts: MatchOptions = {}): Promise<boolean> {
  if (node === undefined || st === undefined) return node === undefined && st === undefined
  switch (node.kind) {
    case 'dir':
      return st.isDirectory()
    case 'link':
      return st.isSymbolicLink() && await fs.readlink(abs) === node.target
    case 'file': {
      if (!st.isFile() || st.size !== node.size || !sameMtime(st.mtimeMs, node.mtimeMs) || isExecMode(st.mode) !== node.exec) return false
      const racy = opts.scanStartedMs !== undefined && node.mtimeMs >= opts.scanStartedMs - RACY_WINDOW_MS
      return racy || opts.content === true ? await contentMatches(abs, node) : true
    }
  }
}

/** Whether the file's bytes hash, chunk by recorded chunk, to the node's chunk hashes. */
export async function contentMatches (abs: string, node: FileNode): Promise<boolean> {
  let fh: fs.FileHandle
  try {
    fh = await fs.open(abs, 'r')
  } catch (err) {
    if (isCode(err, 'ENOENT')) return false
    throw err
  }
  try {
    let buf = Buffer.allocUnsafe(CHUNK_MAX_BYTES)
    let pos = 0
    for (const ref of node.chunks) {
      if (ref.size > buf.byteLength) buf = Buffer.allocUnsafe(ref.size)
      let got = 0
      while (got < ref.size) {
        const { bytesRead } = await fh.read(buf, got, ref.size - got, pos + got)
        if (bytesRead === 0) return false
        got += bytesRead
      }
      pos += ref.size
      if (!hashEquals(createHash('sha256').update(buf.subarray(0, ref.size)).digest(), ref.hash)) return false
    }
    // Nothing past the last chunk.
    const { bytesRead } = await fh.read(buf, 0, 1, pos)
    return bytesRead === 0
  } finally {
    await fh.close()
  }
}

/** Whether two lstats (taken before and after a write of ours elsewhere) show the same entry, untouched. */
export function sameStat (a: Stats | undefined, b: Stats | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return a.ino === b.ino && a.dev === b.dev && a.mode === b.mode && a.size === b.size &&
    a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs
}
