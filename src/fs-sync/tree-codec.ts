/**
 * A tree to its blobs: directory records and chunk lists in canonical CBOR, exactly as
 * types.ts lays them out, each named by its SHA-256. The way back (with every check a record
 * from a peer needs) is tree-decode.ts; both are exported from here.
 */
import { VgridError } from '../common/errors.js'
import { CborWriter } from './cbor-writer.js'
import { hashOf, hexOf } from './hash.js'
import { compareNames } from './paths.js'
import { RECORD_VERSION } from './tree-decode.js'
import type { SubtreeStats } from './tree-stats.js'
import {
  CHUNKS_PER_LIST, HASH_BYTES, INLINE_CHUNKS, MAX_BLOB_BYTES,
  type ChunkRef, type DirNode, type FileNode, type Hash
} from './types.js'

export { hashOf, hexOf, hashEquals, hasHash } from './hash.js'
export { decodeTree, RECORD_VERSION, type DecodeTreeOptions, type DecodedTree } from './tree-decode.js'

export interface EncodedTree {
  rootHash: Hash
  /** Directory records and chunk lists, by hex hash. */
  blobs: Map<string, Uint8Array>
}

interface Encoded {
  node: DirNode
  /** This directory's record and its files' chunk lists (not its subdirectories'). */
  blobs: Array<[string, Uint8Array]>
}

/**
 * The directories of the last tree encoded from one place, by path: a rescan that finds a
 * directory as it was reuses its record instead of encoding and hashing it again (most of a
 * rescan's CPU after the lstat calls). Trees given to encodeTree with a memo must not be
 * changed afterwards; a scan's trees never are.
 */
export class EncodeMemo {
  prev = new Map<string, Encoded>()
  next = new Map<string, Encoded>()
  /** Directories reused by the last encodeTree. */
  reused = 0
  /**
   * Totals of the directories of the last scans (treeStats), by object: a watched scan
   * (scan-watch.ts) hands back the very objects of directories where nothing happened.
   */
  readonly stats = new WeakMap<DirNode, SubtreeStats>()
}

/**
 * Encodes `root` bottom-up and sets the `hash` of every DirNode in it. Throws
 * ERR_WORKSPACE_TOO_LARGE when a directory's record would be past MAX_BLOB_BYTES (a peer
 * would refuse it): about 30,000 entries with short names, or ~20 files of 250 MiB and more.
 */
export function encodeTree (root: DirNode, memo?: EncodeMemo): EncodedTree {
  const blobs = new Map<string, Uint8Array>()
  if (memo !== undefined) { memo.next = new Map(); memo.reused = 0 }
  const rootHash = encodeDir(root, '', blobs, new CborWriter(), memo)
  if (memo !== undefined) { memo.prev = memo.next; memo.next = new Map() }
  return { rootHash, blobs }
}

/** The entries' names in record order (a scan already inserts them in that order). */
function sortedNames (dir: DirNode): string[] {
  const names = [...dir.entries.keys()]
  for (let i = 1; i < names.length; i++) {
    if (compareNames(names[i - 1]!, names[i]!) >= 0) return names.sort(compareNames)
  }
  return names
}

/** Whether `a` would encode to the same record as `b` (their subdirectories already hashed). */
function sameRecord (a: DirNode, b: DirNode): boolean {
  if (a.entries.size !== b.entries.size) return false
  for (const [name, x] of a.entries) {
    const y = b.entries.get(name)
    if (y === undefined || y.kind !== x.kind) return false
    if (x.kind === 'dir') {
      if (!equalBytes(x.hash, (y as DirNode).hash)) return false
    } else if (x.kind === 'link') {
      if (x.target !== (y as typeof x).target) return false
    } else {
      const f = y as FileNode
      if (x.size !== f.size || x.mtimeMs !== f.mtimeMs || x.exec !== f.exec || !sameChunks(x.chunks, f.chunks)) return false
    }
  }
  return true
}

/** Whether two chunk lists name the same chunks, in the same order. */
export function sameChunks (a: readonly ChunkRef[], b: readonly ChunkRef[]): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.size !== b[i]!.size || !equalBytes(a[i]!.hash, b[i]!.hash)) return false
  }
  return true
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

/** Takes `dir`'s subtree as its last encoding left it, `before` being its own record. */
function carry (dir: DirNode, path: string, before: Encoded, blobs: Map<string, Uint8Array>, memo: EncodeMemo): void {
  for (const [hex, bytes] of before.blobs) blobs.set(hex, bytes)
  memo.next.set(path, before)
  memo.reused++
  for (const [name, node] of dir.entries) {
    if (node.kind !== 'dir') continue
    const sub = path === '' ? name : `${path}/${name}`
    const was = memo.prev.get(sub)
    if (was !== undefined && was.node === node) carry(node, sub, was, blobs, memo)
    else encodeDir(node, sub, blobs, new CborWriter(), memo)
  }
}

// Map keys are written in cborg's canonical order: all are one character, so bytewise
// ('L' < 'c' < 'e' < 'h' < 'k' < 'm' < 'n' < 's' < 't' < 'v' < 'x' < 'z').
function encodeDir (dir: DirNode, path: string, blobs: Map<string, Uint8Array>, w: CborWriter, memo?: EncodeMemo): Hash {
  const before = memo?.prev.get(path)
  // The very object encoded last time here (a watched scan's unread subtree): all of it is.
  if (before !== undefined && before.node === dir && dir.hash.length > 0) {
    carry(dir, path, before, blobs, memo!)
    return dir.hash
  }
  const names = sortedNames(dir)
  // Subdirectories first: their hashes go into this record, and they share the writer.
  for (const n of names) {
    const node = dir.entries.get(n)!
    if (node.kind === 'dir') encodeDir(node, path === '' ? n : `${path}/${n}`, blobs, w, memo)
  }
  if (before !== undefined && sameRecord(dir, before.node)) {
    for (const [hex, bytes] of before.blobs) blobs.set(hex, bytes)
    dir.hash = before.node.hash
    memo!.next.set(path, { node: dir, blobs: before.blobs })
    memo!.reused++
    return dir.hash
  }
  const own = memo !== undefined ? new Map<string, Uint8Array>() : blobs
  const lists = new Map<string, Uint8Array>()
  for (const n of names) {
    const node = dir.entries.get(n)!
    if (node.kind === 'file' && node.chunks.length > INLINE_CHUNKS) lists.set(n, chunkLists(node, own, w))
  }
  w.reset().map(2).key('e').array(names.length)
  for (const n of names) {
    const node = dir.entries.get(n)!
    if (node.kind === 'dir') {
      w.map(3).key('h').bin(node.hash).key('k').text('d').key('n').text(n)
    } else if (node.kind === 'link') {
      w.map(3).key('k').text('l').key('n').text(n).key('t').text(node.target)
    } else {
      const L = lists.get(n)
      if (L !== undefined) w.map(6).key('L').bin(L)
      else w.map(7).key('c').binConcat(node.chunks.map((c) => c.hash))
      w.key('k').text('f').key('m').int(node.mtimeMs).key('n').text(n).key('s').int(node.size).key('x').bool(node.exec)
      if (L === undefined) sizes(w.key('z'), node.chunks)
    }
  }
  w.key('v').int(RECORD_VERSION)
  if (w.length > MAX_BLOB_BYTES) {
    throw new VgridError('ERR_WORKSPACE_TOO_LARGE',
      `the directory ${JSON.stringify(path === '' ? '.' : path)} is too large to sync: its record is ${w.length} bytes, past the limit of ${MAX_BLOB_BYTES}`,
      'list some of its entries in .vgridignore, or split it into subdirectories')
  }
  dir.hash = put(w.bytes(), own)
  if (memo !== undefined) {
    for (const [hex, bytes] of own) blobs.set(hex, bytes)
    memo.next.set(path, { node: dir, blobs: [...own] })
  }
  return dir.hash
}

/** A big file's chunks as chunk-list blobs of CHUNKS_PER_LIST (the last one shorter); their hashes end to end. */
function chunkLists (f: FileNode, blobs: Map<string, Uint8Array>, w: CborWriter): Uint8Array {
  const count = Math.ceil(f.chunks.length / CHUNKS_PER_LIST)
  const L = new Uint8Array(count * HASH_BYTES)
  for (let i = 0; i < count; i++) {
    const part = f.chunks.slice(i * CHUNKS_PER_LIST, (i + 1) * CHUNKS_PER_LIST)
    w.reset().map(3).key('c').binConcat(part.map((c) => c.hash))
    sizes(w.key('v').int(RECORD_VERSION).key('z'), part)
    L.set(put(w.bytes(), blobs), i * HASH_BYTES)
  }
  return L
}

function sizes (w: CborWriter, chunks: readonly ChunkRef[]): void {
  w.array(chunks.length)
  for (const c of chunks) w.int(c.size)
}

function put (bytes: Uint8Array, blobs: Map<string, Uint8Array>): Hash {
  const h = hashOf(bytes)
  blobs.set(hexOf(h), bytes)
  return h
}
