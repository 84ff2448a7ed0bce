/**
 * Trees for fs-sync tests without the scanner: `buildTree` turns a plain object into a DirNode
 * (hashes set by encodeTree, so diffTrees can skip equal subtrees) and keeps every chunk's
 * bytes in a map that `reader` serves, counting reads.
 *
 *   buildTree({ 'a.txt': 'hi', bin: { 'run.sh': file('#!/bin/sh', { exec: true }) }, l: link('a.txt') })
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import { createHash } from 'node:crypto'
import { encodeTree } from '../../src/fs-sync/tree-codec.js'
import type { ChunkReader, ChunkRef, DirNode, FileNode, LinkNode, Node } from '../../src/fs-sync/types.js'

/** Small, so a test file of a few KiB already has several chunks. */
export const TEST_CHUNK_BYTES = 1024
/** A fixed mtime (2023-11-14T22:13:20.123Z), so tests can assert it came through. */
export const TEST_MTIME_MS = 1_700_000_000_123

export interface FileSpec { file: string | Uint8Array, exec?: boolean, mtimeMs?: number }
export interface LinkSpec { link: string }
export interface DirSpec { [name: string]: string | FileSpec | LinkSpec | DirSpec }

export function file (content: string | Uint8Array, opts: { exec?: boolean, mtimeMs?: number } = {}): FileSpec {
  return { file: content, ...opts }
}

export function link (target: string): LinkSpec {
  return { link: target }
}

export class ChunkMap {
  readonly chunks = new Map<string, Uint8Array>()
  reads = 0

  add (data: Uint8Array): ChunkRef {
    const hash = createHash('sha256').update(data).digest()
    this.chunks.set(hash.toString('hex'), data)
    return { hash, size: data.byteLength }
  }

  readonly reader: ChunkReader = async (ref) => {
    this.reads++
    const data = this.chunks.get(Buffer.from(ref.hash).toString('hex'))
    if (data === undefined) throw new Error('no such chunk')
    return data
  }
}

function isFileSpec (v: unknown): v is FileSpec {
  return typeof v === 'object' && v !== null && 'file' in v
}

function isLinkSpec (v: unknown): v is LinkSpec {
  return typeof v === 'object' && v !== null && 'link' in v && typeof (v as LinkSpec).link === 'string'
}

export function fileNode (content: string | Uint8Array, chunks: ChunkMap, opts: { exec?: boolean, mtimeMs?: number } = {}): FileNode {
  const bytes = typeof content === 'string' ? Buffer.from(content) : content
  const refs: ChunkRef[] = []
  for (let off = 0; off < bytes.byteLength; off += TEST_CHUNK_BYTES) {
    refs.push(chunks.add(bytes.subarray(off, off + TEST_CHUNK_BYTES)))
  }
  return { kind: 'file', size: bytes.byteLength, exec: opts.exec ?? false, mtimeMs: opts.mtimeMs ?? TEST_MTIME_MS, chunks: refs }
}

function build (spec: DirSpec, chunks: ChunkMap): DirNode {
  const entries = new Map<string, Node>()
  for (const [name, v] of Object.entries(spec)) {
    if (typeof v === 'string') entries.set(name, fileNode(v, chunks))
    else if (isFileSpec(v)) entries.set(name, fileNode(v.file, chunks, v))
    else if (isLinkSpec(v)) entries.set(name, { kind: 'link', target: v.link } satisfies LinkNode)
    else entries.set(name, build(v, chunks))
  }
  return { kind: 'dir', hash: new Uint8Array(32), entries }
}

/** A DirNode for `spec`, its chunks added to `chunks`. */
export function buildTree (spec: DirSpec, chunks = new ChunkMap()): DirNode {
  const root = build(spec, chunks)
  encodeTree(root)
  return root
}

/** What is on disk under `root`: files as their content, links as `-> target`, dirs as objects. */
export async function readDisk (root: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  for (const d of await fs.readdir(root, { withFileTypes: true })) {
    const p = path.join(root, d.name)
    if (d.isSymbolicLink()) out[d.name] = `-> ${await fs.readlink(p)}`
    else if (d.isDirectory()) out[d.name] = await readDisk(p)
    else out[d.name] = await fs.readFile(p, 'utf8')
  }
  return out
}
