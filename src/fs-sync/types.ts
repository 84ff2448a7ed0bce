/**
 * The shapes of workspace sync, shared by every file of src/fs-sync/.
 *
 * A workspace is a tree. In memory it is fully expanded (DirNode → entries); on the wire and in
 * the store it is a Merkle tree of **blobs**, each named by the SHA-256 of its bytes:
 *
 * - a directory record: canonical CBOR (cborg's default encoding: sorted map keys, shortest
 *   integers) of `{ v: 1, e: Entry[] }`, entries sorted by name (byte order of UTF-8):
 *     file  `{ n: name, k: 'f', s: size, x: exec (bool), m: mtimeMs (int), c: Uint8Array (32-byte
 *            chunk hashes, concatenated), z: number[] (chunk sizes) }` when it has at most
 *            INLINE_CHUNKS chunks; else `{ n, k: 'f', s, x, m, L: Uint8Array (32-byte hashes of
 *            chunk-list blobs, concatenated) }`
 *     dir   `{ n: name, k: 'd', h: Uint8Array (hash of its record) }`
 *     link  `{ n: name, k: 'l', t: target }`
 * - a chunk-list blob: canonical CBOR of `{ v: 1, c: Uint8Array, z: number[] }` with at most
 *   CHUNKS_PER_LIST chunks (a big file's chunks, in order, split over several lists);
 * - a chunk: raw file bytes, FastCDC 2020 cut (min 16 KiB, avg 64 KiB, max 256 KiB).
 *
 * The root hash of a workspace is the hash of its top directory record: equal hashes mean
 * equal trees, so "nothing changed" is one comparison.
 */

export type Hash = Uint8Array

export interface ChunkRef {
  hash: Hash
  size: number
}

export interface FileNode {
  kind: 'file'
  size: number
  exec: boolean
  /** Milliseconds since the epoch, integer. */
  mtimeMs: number
  chunks: ChunkRef[]
}

export interface LinkNode {
  kind: 'link'
  /** Kept as is; never followed when writing. */
  target: string
}

export interface DirNode {
  kind: 'dir'
  /** Hash of this directory's record (set by encodeTree / decodeTree). */
  hash: Hash
  entries: Map<string, Node>
}

export type Node = FileNode | LinkNode | DirNode

/** Totals of a tree, for progress and the summary line. */
export interface TreeStats {
  files: number
  dirs: number
  links: number
  bytes: number
  chunks: number
}

/** Where the bytes of a chunk can be read on this machine (the submitter's scan). */
export interface ChunkSource {
  path: string
  offset: number
  size: number
  /**
   * The file's stat when the scan read it, set only when it was old enough to trust (as the
   * stat cache does): a read from a file whose fstat still shows it needs no hash check.
   */
  stat?: FileStatKey
}

/** What any write to a file moves: size, mtime and ctime (ns), inode. */
export interface FileStatKey {
  size: bigint
  mtimeNs: bigint
  ctimeNs: bigint
  ino: bigint
}

/** Reads the bytes of a chunk, verified against its hash, from wherever it is. */
export type ChunkReader = (ref: ChunkRef) => Promise<Uint8Array>

export interface Change {
  /** Relative path with '/' separators. */
  path: string
  kind: 'add' | 'modify' | 'delete'
  /** The new node (add, modify). */
  node?: Node
  /** The previous node (modify, delete). */
  old?: Node
}

export const CHUNK_MIN_BYTES = 16 * 1024
export const CHUNK_AVG_BYTES = 64 * 1024
export const CHUNK_MAX_BYTES = 256 * 1024
export const HASH_BYTES = 32
/** Files with more chunks (about 16 MiB and up) keep their chunk list in separate blobs, so a
 * directory of big checkpoints still fits one record. */
export const INLINE_CHUNKS = 256
export const CHUNKS_PER_LIST = 65536

/** Limits on what a peer may send (documented in the README). */
export const MAX_BLOB_BYTES = 3 * 1024 * 1024
export const MAX_ENTRIES_PER_DIR = 65536
export const MAX_NAME_BYTES = 255
export const MAX_LINK_TARGET_BYTES = 4096
export const MAX_TREE_DEPTH = 256
export const MAX_TREE_FILES = 2_000_000
export const MAX_FILE_BYTES = 2 ** 44
