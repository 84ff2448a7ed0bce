/**
 * Where the executor's workspace copies hold each chunk, so that a sync writes every byte
 * once. A chunk a sync writes into a copy's file is not also put in the chunk store: this
 * index remembers the file and offset instead, and a later sync that needs the chunk (a
 * second copy of the same workspace, a big file rewritten around an insertion) reads it from
 * there. Writing each byte twice, store and copy, cost the first sync of the bench's 1 GiB
 * tree ~15 % of its time on this machine's ext4 (interleaved runs, 2026-12-07).
 *
 * A copy's files belong to its guests, who may have changed them since, so nothing here is
 * trusted: a read hashes the bytes again (a mismatch is a plain miss and forgets the entry),
 * it never follows a link (no parent may be a symlink, the file itself is opened O_NOFOLLOW),
 * and it reads only a regular file, opened non-blocking (a FIFO put there cannot hold the
 * agent). A guest that swapped a directory of its copy for a link to the agent's own files
 * therefore learns nothing, not even whether a guessed content is there.
 *
 * Entries live in memory only; after a restart a copy's own chunks come back when its record
 * is next loaded (`addTree`). The index is capped: past MAX_COPY_CHUNKS the oldest entries are
 * forgotten, and those chunks travel again if needed.
 */
import fs from 'node:fs'
import path from 'node:path'
import { checkRelPath } from './paths.js'
import { closeQuietly, readChunkFromFd } from './read-chunk.js'
import { keyOf } from './store.js'
import type { DirNode, FileNode } from './types.js'

/** Chunks remembered (~150 bytes each: ~40 MB at the cap, ~16 GiB of files at 64 KiB a chunk). */
export const MAX_COPY_CHUNKS = 262_144

export interface Where {
  /** The copy's directory (absolute). */
  root: string
  /** The file, relative to it, '/'-separated. */
  rel: string
  offset: number
  size: number
}

const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK

export class CopyChunks {
  private readonly where = new Map<string, Where>()
  /** Copies whose record was registered whole since this agent started. */
  private readonly known = new Set<string>()

  constructor (private readonly cap = MAX_COPY_CHUNKS) {}

  get size (): number {
    return this.where.size
  }

  /** The copy and file that hold the chunk, as far as this index knows. */
  locate (hash: Uint8Array): Readonly<Where> | undefined {
    return this.where.get(keyOf(hash))
  }

  /** Whether `root`'s files were registered whole (`addTree`) since this agent started. */
  knows (root: string): boolean {
    return this.known.has(root)
  }

  /** The file `rel` of the copy `root` now holds `file`'s chunks, in order. */
  add (root: string, rel: string, file: FileNode): void {
    let offset = 0
    for (const c of file.chunks) {
      const key = keyOf(c.hash)
      // re-inserted, so that the Map's order stays the order of last registration
      this.where.delete(key)
      this.where.set(key, { root, rel, offset, size: c.size })
      offset += c.size
    }
    while (this.where.size > this.cap) this.where.delete(this.where.keys().next().value!)
  }

  /** Every file of `tree`, the copy `root`'s record (links and entries marked changed are not files). */
  addTree (root: string, tree: DirNode): void {
    const walk = (dir: DirNode, prefix: string): void => {
      for (const [name, node] of dir.entries) {
        const rel = prefix === '' ? name : `${prefix}/${name}`
        if (node.kind === 'file') this.add(root, rel, node)
        else if (node.kind === 'dir') walk(node, rel)
      }
    }
    walk(tree, '')
    this.known.add(root)
  }

  /**
   * The chunk, read from the copy that holds it and verified against its hash; undefined when
   * it is not known, or its file no longer holds it (the entry is then forgotten).
   */
  get (hash: Uint8Array): Uint8Array | undefined {
    const key = keyOf(hash)
    const w = this.where.get(key)
    if (w === undefined) return undefined
    const data = readFrom(w, hash)
    if (data !== undefined) return data
    if (this.where.get(key) === w) this.where.delete(key)
    return undefined
  }
}

/**
 * The chunk at `w`, hashed again (readChunkFromFd), from a regular file reached without any
 * link; else undefined. Synchronous: a chunk is at most 256 KiB and usually in the page
 * cache, and the lstats of its parents cost microseconds (as in read-chunk.ts).
 */
function readFrom (w: Where, hash: Uint8Array): Uint8Array | undefined {
  let fd: number | undefined
  try {
    checkRelPath(w.rel)
    const parts = w.rel.split('/')
    // `dir` ends as the file itself, once each directory on the way was found to be one
    let dir = w.root
    for (let i = 0; i < parts.length; i++) {
      if (!fs.lstatSync(dir).isDirectory()) return undefined
      dir = path.join(dir, parts[i]!)
    }
    fd = fs.openSync(dir, OPEN_FLAGS)
    if (!fs.fstatSync(fd).isFile()) return undefined
    return readChunkFromFd({ path: dir, offset: w.offset, size: w.size }, hash, fd)
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) closeQuietly(fd)
  }
}
