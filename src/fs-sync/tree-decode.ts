/**
 * Blobs from a peer back into a tree. Everything here is hostile until checked: each blob's
 * bytes must hash to its name, be canonical CBOR (decoding and re-encoding gives the same
 * bytes, so equal trees keep equal hashes), and every field must have the type, range and
 * size types.ts allows. A refusal says where in the tree and what was wrong.
 *
 * With a `base` tree (the one a copy already holds), subtrees whose hash is in it are taken
 * from it without fetching a blob: "nothing changed" costs one comparison and an edit deep
 * in the tree costs one record per level. Trees are values: subtrees with equal hashes may be
 * one shared object, in the result and between the result and `base`.
 */
import { decode, encode, type DecodeOptions } from 'cborg'
import { CborWriter } from './cbor-writer.js'
import { VgridError } from '../common/errors.js'
import { hashEquals, hashOf, hasHash, hexOf } from './hash.js'
import { compareNames, nameProblem } from './paths.js'
import { checkTreeLimits, treeStats } from './tree-stats.js'
import {
  CHUNK_MAX_BYTES, CHUNKS_PER_LIST, HASH_BYTES, INLINE_CHUNKS, MAX_BLOB_BYTES,
  MAX_ENTRIES_PER_DIR, MAX_FILE_BYTES, MAX_LINK_TARGET_BYTES, MAX_TREE_DEPTH, MAX_TREE_FILES,
  type ChunkRef, type DirNode, type FileNode, type Hash, type Node, type TreeStats
} from './types.js'

export const RECORD_VERSION = 1
/** Blob requests in flight at once, so that a fetcher can batch them. */
export const DECODE_CONCURRENCY = 64
/** mtimes are refused outside what a JS Date can hold (±100,000,000 days, in ms). */
const MAX_ABS_MTIME_MS = 8.64e15

const CBOR_STRICT: DecodeOptions = {
  strict: true,
  rejectDuplicateMapKeys: true,
  allowIndefinite: false,
  allowUndefined: false,
  allowNaN: false,
  allowInfinity: false,
  allowBigInt: false
}

export interface DecodeTreeOptions {
  /** A tree already held; its subtrees are reused where hashes match. */
  base?: DirNode
  signal?: AbortSignal
  /** Blob requests in flight at once (default DECODE_CONCURRENCY). */
  concurrency?: number
}

export interface DecodedTree {
  tree: DirNode
  stats: TreeStats
}

type GetBlob = (hash: Hash) => Promise<Uint8Array>

export async function decodeTree (rootHash: Hash, getBlob: GetBlob, opts: DecodeTreeOptions = {}): Promise<DecodedTree> {
  if (!(rootHash instanceof Uint8Array) || rootHash.byteLength !== HASH_BYTES) badTree('', 'the root hash is not 32 bytes')
  const d = new Decoder(getBlob, opts)
  let tree: DirNode
  try {
    tree = await d.dir(rootHash, '', 0)
  } finally {
    d.stop() // a refusal leaves no fetches running behind it
  }
  const stats = treeStats(tree)
  checkTreeLimits(stats, 'ERR_BAD_MESSAGE')
  const { height: _, ...totals } = stats
  return { tree, stats: totals }
}

class Decoder {
  private readonly base = new Map<string, DirNode>()
  private readonly decoded = new Map<string, Promise<DirNode>>()
  private readonly concurrency: number
  private readonly signal: AbortSignal | undefined
  private inFlight = 0
  private readonly waiting: Array<() => void> = []
  /** Re-encodes each record for the canonical check (cborg's encoder cost ~125 ms of a 1 GiB tree's first sync, on the executor's main thread). */
  private readonly canonical = new CborWriter()
  /** Entries parsed from distinct records: bounds the work a hostile tree can cause. */
  private parsedEntries = 0
  private stopped = false

  constructor (private readonly getBlob: GetBlob, opts: DecodeTreeOptions) {
    this.concurrency = Math.max(1, opts.concurrency ?? DECODE_CONCURRENCY)
    this.signal = opts.signal
    if (opts.base !== undefined) indexDirs(opts.base, this.base)
  }

  stop (): void {
    this.stopped = true
  }

  dir (hash: Hash, path: string, depth: number): Promise<DirNode> {
    const hex = hexOf(hash)
    const reused = this.base.get(hex)
    if (reused !== undefined) return Promise.resolve(reused)
    if (depth > MAX_TREE_DEPTH) badTree(path, `nested deeper than ${MAX_TREE_DEPTH} levels`)
    let p = this.decoded.get(hex)
    if (p === undefined) {
      p = this.fetchDir(hash, path, depth)
      this.decoded.set(hex, p)
    }
    return p
  }

  private async fetchDir (hash: Hash, path: string, depth: number): Promise<DirNode> {
    const rec = obj(await this.blob(hash, path), path, 'directory record', ['e', 'v'])
    if (rec.v !== RECORD_VERSION) badTree(path, `record version ${String(rec.v)} is not ${RECORD_VERSION}`)
    if (!Array.isArray(rec.e)) badTree(path, 'entries are not a list')
    if (rec.e.length > MAX_ENTRIES_PER_DIR) badTree(path, `${rec.e.length} entries, past the limit of ${MAX_ENTRIES_PER_DIR}`)
    this.parsedEntries += rec.e.length
    if (this.parsedEntries > MAX_TREE_FILES) badTree(path, `more than ${MAX_TREE_FILES} entries in the tree`)
    const slots: Array<[string, Node | Promise<Node>]> = []
    try {
      this.parseEntries(rec.e as unknown[], path, depth, slots)
    } catch (err) {
      // Subdirectories already asked for must not reject unobserved.
      for (const [, node] of slots) if (node instanceof Promise) node.catch(() => {})
      throw err
    }
    const nodes = await Promise.all(slots.map(([, node]) => node))
    const entries = new Map<string, Node>()
    for (let i = 0; i < slots.length; i++) entries.set(slots[i]![0], nodes[i]!)
    return { kind: 'dir', hash: new Uint8Array(hash), entries }
  }

  private parseEntries (list: unknown[], path: string, depth: number, slots: Array<[string, Node | Promise<Node>]>): void {
    let prev: string | undefined
    for (const raw of list) {
      const name = (raw as { n?: unknown } | null)?.n
      const problem = nameProblem(name)
      if (problem !== undefined) badTree(path, `the entry name ${JSON.stringify(String(name).slice(0, 64))} ${problem}`)
      const n = name as string
      const at = path === '' ? n : `${path}/${n}`
      if (prev !== undefined && compareNames(prev, n) >= 0) {
        badTree(at, compareNames(prev, n) === 0 ? 'the name appears twice' : 'entries are not sorted by name')
      }
      prev = n
      const kind = (raw as { k?: unknown }).k
      if (kind === 'd') {
        slots.push([n, this.dir(hashField(obj(raw, at, 'entry', DIR_KEYS).h, at, 'h'), at, depth + 1)])
      } else if (kind === 'l') {
        slots.push([n, { kind: 'link', target: linkTarget(obj(raw, at, 'entry', LINK_KEYS).t, at) }])
      } else if (kind === 'f') {
        const listed = Object.hasOwn(raw as object, 'L')
        const e = obj(raw, at, 'entry', listed ? FILE_LISTED_KEYS : FILE_INLINE_KEYS)
        const file = fileHead(e, at)
        if (listed) {
          slots.push([n, this.chunkLists(e.L, file, at)])
        } else {
          file.chunks = chunkRefs(e, at, INLINE_CHUNKS)
          checkFileSize(file, at)
          slots.push([n, file])
        }
      } else {
        badTree(at, 'the entry kind is not f, d or l')
      }
    }
  }

  private async chunkLists (L: unknown, file: FileNode, at: string): Promise<FileNode> {
    if (!(L instanceof Uint8Array) || L.byteLength === 0 || L.byteLength % HASH_BYTES !== 0) badTree(at, 'L is not a list of 32-byte hashes')
    const lists = L.byteLength / HASH_BYTES
    if (file.size <= INLINE_CHUNKS) badTree(at, `${file.size} bytes are too small to have their chunks listed apart`)
    // Every chunk holds at least one byte: the size bounds how many lists it may take.
    if (lists > Math.ceil(file.size / CHUNKS_PER_LIST)) badTree(at, `${lists} chunk lists are too many for ${file.size} bytes`)
    const parts = await Promise.all(Array.from({ length: lists }, async (_, i) => {
      const h = L.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES)
      const rec = obj(await this.blob(h, `${at} (chunk list ${i})`), at, 'chunk list', ['c', 'v', 'z'])
      if (rec.v !== RECORD_VERSION) badTree(at, `chunk list version ${String(rec.v)} is not ${RECORD_VERSION}`)
      const refs = chunkRefs(rec, `${at} (chunk list ${i})`, CHUNKS_PER_LIST)
      // Canonical split: full lists, then one partial last list.
      if (i < lists - 1 ? refs.length !== CHUNKS_PER_LIST : refs.length === 0) badTree(at, `chunk list ${i} has ${refs.length} chunks`)
      return refs
    }))
    file.chunks = parts.flat()
    if (file.chunks.length <= INLINE_CHUNKS) badTree(at, `${file.chunks.length} chunks are listed apart; at most ${INLINE_CHUNKS} must be inline`)
    checkFileSize(file, at)
    return file
  }

  /** Fetches, verifies and decodes one blob. */
  private async blob (hash: Hash, path: string): Promise<unknown> {
    this.signal?.throwIfAborted()
    while (this.inFlight >= this.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve))
    if (this.stopped) throw new VgridError('ERR_BAD_MESSAGE', 'decoding stopped')
    this.inFlight++
    let bytes: unknown
    try {
      bytes = await this.getBlob(hash)
    } finally {
      this.inFlight--
      this.waiting.shift()?.()
    }
    if (!(bytes instanceof Uint8Array)) badTree(path, 'a blob is not bytes')
    if (bytes.byteLength > MAX_BLOB_BYTES) badTree(path, `a blob of ${bytes.byteLength} bytes is past the limit of ${MAX_BLOB_BYTES}`)
    if (!hashEquals(hashOf(bytes), hash)) {
      throw new VgridError('ERR_CHUNK_HASH_MISMATCH', `the record of ${JSON.stringify(path || '.')} does not match its hash ${hexOf(hash)}`)
    }
    let value: unknown
    try {
      value = decode(bytes, CBOR_STRICT)
    } catch (err) {
      badTree(path, `not valid CBOR (${(err as Error).message})`)
    }
    // what no record holds (a float…) goes through cborg's encoder, for the same verdict
    const canonical = this.canonical.reset().value(value) ? this.canonical.equals(bytes) : hashEquals(encode(value), bytes)
    if (!canonical) badTree(path, 'the record is not in canonical CBOR')
    return value
  }
}

const DIR_KEYS = ['h', 'k', 'n']
const LINK_KEYS = ['k', 'n', 't']
const FILE_INLINE_KEYS = ['c', 'k', 'm', 'n', 's', 'x', 'z']
const FILE_LISTED_KEYS = ['L', 'k', 'm', 'n', 's', 'x'] // 'L' sorts before lowercase

function fileHead (e: Record<string, unknown>, at: string): FileNode {
  const s = e.s
  if (typeof s !== 'number' || !Number.isInteger(s) || s < 0 || s > MAX_FILE_BYTES) badTree(at, `size is not an integer in [0, ${MAX_FILE_BYTES}]`)
  if (typeof e.x !== 'boolean') badTree(at, 'exec is not a boolean')
  const m = e.m
  if (typeof m !== 'number' || !Number.isInteger(m) || Math.abs(m) > MAX_ABS_MTIME_MS) badTree(at, 'mtime is not an integer number of ms')
  return { kind: 'file', size: s, exec: e.x, mtimeMs: m, chunks: [] }
}

/** `{ c, z }` to chunk refs, each size in [1, CHUNK_MAX_BYTES] (the rest is checkFileSize's). */
function chunkRefs (rec: Record<string, unknown>, at: string, maxChunks: number): ChunkRef[] {
  const { c, z } = rec
  if (!Array.isArray(z)) badTree(at, 'chunk sizes are not a list')
  if (z.length > maxChunks) badTree(at, `${z.length} chunks, past the limit of ${maxChunks} here`)
  if (!(c instanceof Uint8Array) || c.byteLength !== z.length * HASH_BYTES) badTree(at, 'chunk hashes do not match chunk sizes')
  const hashes = new Uint8Array(c) // our own copy: the blob's buffer may be reused by its owner
  const refs = new Array<ChunkRef>(z.length)
  for (let i = 0; i < z.length; i++) {
    const size = z[i]
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > CHUNK_MAX_BYTES) {
      badTree(at, `chunk ${i} size is not an integer in [1, ${CHUNK_MAX_BYTES}]`)
    }
    refs[i] = { hash: hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), size }
  }
  return refs
}

/**
 * The chunks add up to the size. (FastCDC cuts no chunk below CHUNK_MIN_BYTES but the last;
 * that is not required here, so another chunker, or a test's small chunks, still decode.)
 */
function checkFileSize (f: FileNode, at: string): void {
  let sum = 0
  for (const c of f.chunks) sum += c.size
  if (sum !== f.size) badTree(at, `chunks add up to ${sum} bytes, not the size ${f.size}`)
}

function linkTarget (t: unknown, at: string): string {
  if (typeof t !== 'string' || t === '') badTree(at, 'link target is not a non-empty string')
  if (t.includes('\0')) badTree(at, 'link target contains a NUL byte')
  if (t.length > MAX_LINK_TARGET_BYTES || Buffer.byteLength(t, 'utf8') > MAX_LINK_TARGET_BYTES) {
    badTree(at, `link target is longer than ${MAX_LINK_TARGET_BYTES} bytes`)
  }
  return t
}

function hashField (h: unknown, at: string, what: string): Hash {
  if (!(h instanceof Uint8Array) || h.byteLength !== HASH_BYTES) badTree(at, `${what} is not a 32-byte hash`)
  return h
}

/** A CBOR map with exactly the keys `keys` (sorted). */
function obj (v: unknown, at: string, what: string, keys: readonly string[]): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) badTree(at, `the ${what} is not a map`)
  const got = Object.keys(v).sort()
  if (got.length !== keys.length || got.some((k, i) => k !== keys[i])) {
    badTree(at, `the ${what} has fields ${got.join(',').slice(0, 100)}, not ${keys.join(',')}`)
  }
  return v as Record<string, unknown>
}

function indexDirs (dir: DirNode, out: Map<string, DirNode>): void {
  if (!hasHash(dir)) return
  const hex = hexOf(dir.hash)
  if (out.has(hex)) return
  out.set(hex, dir)
  for (const node of dir.entries.values()) if (node.kind === 'dir') indexDirs(node, out)
}

function badTree (path: string, what: string): never {
  throw new VgridError('ERR_BAD_MESSAGE', `malformed workspace tree at ${JSON.stringify(path === '' ? '.' : path)}: ${what}`)
}
