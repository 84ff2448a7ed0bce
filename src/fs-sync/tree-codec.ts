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

/**
 * Encodes `root` bottom-up and sets the `hash` of every DirNode in it. Throws
 * ERR_WORKSPACE_TOO_LARGE when a directory's record would be past MAX_BLOB_BYTES (a peer
 * would refuse it): about 30,000 entries with short names, or ~20 files of 250 MiB and more.
 */
export function encodeTree (root: DirNode): EncodedTree {
  const blobs = new Map<string, Uint8Array>()
  const rootHash = encodeDir(root, '', blobs, new CborWriter())
  return { rootHash, blobs }
}

// Map keys are written in cborg's canonical order: all are one character, so bytewise
// ('L' < 'c' < 'e' < 'h' < 'k' < 'm' < 'n' < 's' < 't' < 'v' < 'x' < 'z').
function encodeDir (dir: DirNode, path: string, blobs: Map<string, Uint8Array>, w: CborWriter): Hash {
  const names = [...dir.entries.keys()].sort(compareNames)
  // Children first: their hashes go into this record, and they share the writer.
  const lists = new Map<string, Uint8Array>()
  for (const n of names) {
    const node = dir.entries.get(n)!
    if (node.kind === 'dir') encodeDir(node, path === '' ? n : `${path}/${n}`, blobs, w)
    else if (node.kind === 'file' && node.chunks.length > INLINE_CHUNKS) lists.set(n, chunkLists(node, blobs, w))
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
  dir.hash = put(w.bytes(), blobs)
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
