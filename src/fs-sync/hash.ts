/** SHA-256 names of blobs and chunks, and the hex form used as map keys. */
import { createHash } from 'node:crypto'
import { HASH_BYTES, type DirNode, type Hash } from './types.js'

export function hashOf (bytes: Uint8Array): Hash {
  return createHash('sha256').update(bytes).digest()
}

export function hexOf (hash: Uint8Array): string {
  return Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength).toString('hex')
}

/**
 * A hash as a Map key: its bytes as one latin1 character each (what Buffer's `latin1` gives,
 * half the length of hex). Built without a Buffer view: a first sync asks for ~24,000 chunks
 * and names each several times, and the views and hex strings were ~0.26 s of the executor's
 * main thread (a profile of the 1 GiB tree's first sync).
 */
export function blobKey (hash: Uint8Array): string {
  return String.fromCharCode.apply(null, hash as unknown as number[])
}

export function hashEquals (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0
}

/**
 * Whether a DirNode's hash has been set (by encodeTree or decodeTree). An empty or all-zero
 * hash is a placeholder of a tree built by hand.
 */
export function hasHash (dir: DirNode): boolean {
  const h = dir.hash
  if (h === undefined || h.byteLength !== HASH_BYTES) return false
  for (let i = 0; i < HASH_BYTES; i++) if (h[i] !== 0) return true
  return false
}
