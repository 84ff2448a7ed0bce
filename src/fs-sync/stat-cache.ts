/**
 * The stat cache: the chunks of each file as of its last scan, keyed by what a change to the
 * file always moves (size, mtime and ctime in ns, inode), as git's index, restic and casync
 * do. A rescan of an unchanged workspace then reads no file, only stats them.
 *
 * One compact binary file per workspace root, written atomically (temporary file + rename)
 * and ending in its own SHA-256: anything unreadable, truncated or from another version or
 * chunker is an empty cache, never an error (the only cost is hashing again).
 *
 * "Racily clean" files (git's term) are not cached: a file whose ctime is within
 * RACY_MARGIN_MS of the start of the scan could change again within the same timestamp tick,
 * keeping every key equal while its content differs. Any later write moves ctime past the
 * start of the scan, so a file older than that is safe to trust.
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { lstatSync } from 'node:fs'
import { CHUNK_AVG_BYTES, CHUNK_MAX_BYTES, CHUNK_MIN_BYTES, HASH_BYTES, type ChunkRef, type FileNode, type FileStatKey } from './types.js'

export const STAT_CACHE_DIR = 'statcache'
const MAGIC = 0x43534756 // 'VGSC' little-endian
const FORMAT_VERSION = 1
/** Cached chunk lists are only valid for the chunker that cut them. */
export const CHUNKER_ID = `fastcdc2020/${CHUNK_MIN_BYTES}/${CHUNK_AVG_BYTES}/${CHUNK_MAX_BYTES}/sha256`
/** Coarse file timestamps (a kernel tick, 1–10 ms) and some clock skew on network file systems. */
export const RACY_MARGIN_MS = 2000
const NS_PER_MS = 1_000_000n
/** Paths are stored with a 16-bit length; deeper ones are simply not cached. */
const MAX_PATH_BYTES = 0xffff
const ENTRY_FIXED_BYTES = 2 + 8 * 4 + 4
const CHUNK_BYTES = HASH_BYTES + 4

/** The parts of `fs.lstat(p, { bigint: true })` the cache keys on. */
export type StatKey = FileStatKey

/** Whether a file last changed before `beforeNs`: one changed since may change again unseen. */
export function settledBefore (st: StatKey, beforeNs: bigint): boolean {
  return st.ctimeNs < beforeNs && st.mtimeNs < beforeNs
}

interface Entry extends StatKey {
  chunks: ChunkRef[]
  /** The last scan that saw it (StatCache.scan). */
  seen: number
}

export interface StatCacheOptions {
  chunkerId?: string
  racyMarginMs?: number
}

/** `$VGRID_HOME/statcache/<sha256 of the absolute root>.bin` */
export function statCachePath (vgridHome: string, root: string): string {
  const id = createHash('sha256').update(path.resolve(root)).digest('hex')
  return path.join(vgridHome, STAT_CACHE_DIR, `${id}.bin`)
}

export class StatCache {
  /**
   * Every entry, each marked with the last scan that saw it: one Map, so that a scan of an
   * unchanged workspace writes nothing per file into it (two Maps, the saved scan's and this
   * one's, cost ~20 k Map writes per scan of 10,000 files).
   */
  private readonly entries: Map<string, Entry>
  /** The scan under way: entries seen since beginScan() carry it. */
  private scan = 0
  /** Entries this scan saw (or recorded). */
  private seenNow = 0
  private dirty = false
  private trustBeforeNs = 0n
  private readonly chunkerId: string
  private readonly racyMarginMs: number

  private constructor (readonly file: string | undefined, entries: Map<string, Entry>, opts: StatCacheOptions) {
    this.entries = entries
    this.chunkerId = opts.chunkerId ?? CHUNKER_ID
    this.racyMarginMs = opts.racyMarginMs ?? RACY_MARGIN_MS
    this.beginScan()
  }

  /** The cache saved in `file`; empty when the file is missing or unreadable. */
  static async load (file: string, opts: StatCacheOptions = {}): Promise<StatCache> {
    let entries = new Map<string, Entry>()
    try {
      entries = parse(await fs.readFile(file), opts.chunkerId ?? CHUNKER_ID)
    } catch {
      // Missing, unreadable or corrupt: start empty.
    }
    return new StatCache(file, entries, opts)
  }

  /** An empty cache; `save()` is a no-op without a file. */
  static empty (file?: string, opts: StatCacheOptions = {}): StatCache {
    return new StatCache(file, new Map(), opts)
  }

  get size (): number {
    return this.entries.size
  }

  /** Starts a new scan: files changed from now on are never trusted, entries not seen are dropped at save. */
  beginScan (): void {
    this.trustBeforeNs = BigInt(Date.now() - this.racyMarginMs) * NS_PER_MS
    this.scan++
    this.seenNow = 0
  }

  /** Which scan is under way (one more at each beginScan): a save put off is moot once another began. */
  get generation (): number {
    return this.scan
  }

  /** The chunks of `relPath` when its stat is unchanged since they were recorded. */
  lookup (relPath: string, st: StatKey): ChunkRef[] | undefined {
    const e = this.entries.get(relPath)
    if (e === undefined || e.size !== st.size || e.mtimeNs !== st.mtimeNs || e.ctimeNs !== st.ctimeNs || e.ino !== st.ino) return undefined
    if (e.seen !== this.scan) {
      e.seen = this.scan
      this.seenNow++
    }
    return e.chunks
  }

  /**
   * Marks `relPath` seen by this scan without its stat: a file the scan took from the last one
   * unread (a watched directory where nothing happened, scan-watch.ts).
   */
  keep (relPath: string): void {
    const e = this.entries.get(relPath)
    if (e === undefined || e.seen === this.scan) return
    e.seen = this.scan
    this.seenNow++
  }

  /** The stat `relPath` had when last recorded, without marking it seen (the copy's check). */
  peek (relPath: string): StatKey | undefined {
    return this.entries.get(relPath)
  }

  /** Remembers the chunks of a file read with stat `st` (taken before reading it). */
  record (relPath: string, st: StatKey, chunks: ChunkRef[]): void {
    if (!settledBefore(st, this.trustBeforeNs)) return
    if (relPath.length * 3 > MAX_PATH_BYTES && Buffer.byteLength(relPath, 'utf8') > MAX_PATH_BYTES) return
    // never keep an entry that does not add up (lookup trusts every entry it finds)
    if (!addsUp(chunks, st.size)) return
    if (this.entries.get(relPath)?.seen !== this.scan) this.seenNow++
    this.entries.set(relPath, { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, chunks, seen: this.scan })
    this.dirty = true
  }

  /**
   * Starts a scan with what the caller has just written itself under `dir` (relative path and
   * the tree node it wrote from), so the next scan need not read those files again. Only
   * files whose size and mtime on disk are the node's are recorded, with the stat they have
   * now; anything that writes them later moves their ctime, and they are read again.
   */
  async beginScanWith (dir: string, written: Iterable<[string, FileNode]>): Promise<void> {
    this.beginScan()
    let n = 0
    for (const [rel, node] of written) {
      const st = lstatSync(path.join(dir, rel), { bigint: true, throwIfNoEntry: false })
      if (st?.isFile() === true && st.size === BigInt(node.size) && floorMs(st.mtimeNs) === node.mtimeMs) {
        this.record(rel, { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino }, node.chunks)
      }
      // keeps the agent responsive on a huge tree
      if (++n % 1024 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
  }

  /** Writes the entries seen since beginScan() (atomically); skipped when nothing changed. */
  async save (): Promise<void> {
    if (this.file === undefined) return
    if (!this.dirty && this.seenNow === this.entries.size) return
    for (const [k, e] of this.entries) if (e.seen !== this.scan) this.entries.delete(k)
    const bytes = serialize(this.entries, this.chunkerId)
    await fs.mkdir(path.dirname(this.file), { recursive: true })
    const tmp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
    try {
      await fs.writeFile(tmp, bytes)
      await fs.rename(tmp, this.file)
    } catch (err) {
      await fs.rm(tmp, { force: true })
      throw err
    }
    this.dirty = false
  }
}

function serialize (entries: Map<string, Entry>, chunkerId: string): Buffer {
  const id = Buffer.from(chunkerId, 'utf8')
  const paths: Buffer[] = []
  let size = 4 + 4 + 2 + id.length + 4
  for (const [p, e] of entries) {
    const pb = Buffer.from(p, 'utf8')
    paths.push(pb)
    size += ENTRY_FIXED_BYTES + pb.length + e.chunks.length * CHUNK_BYTES
  }
  const buf = Buffer.allocUnsafe(size + HASH_BYTES)
  let o = buf.writeUInt32LE(MAGIC, 0)
  o = buf.writeUInt32LE(FORMAT_VERSION, o)
  o = buf.writeUInt16LE(id.length, o)
  o += id.copy(buf, o)
  o = buf.writeUInt32LE(entries.size, o)
  let i = 0
  for (const e of entries.values()) {
    const pb = paths[i++]!
    o = buf.writeUInt16LE(pb.length, o)
    o += pb.copy(buf, o)
    o = buf.writeBigUInt64LE(e.size, o)
    o = buf.writeBigInt64LE(e.mtimeNs, o)
    o = buf.writeBigInt64LE(e.ctimeNs, o)
    o = buf.writeBigUInt64LE(e.ino, o)
    o = buf.writeUInt32LE(e.chunks.length, o)
    for (const c of e.chunks) {
      buf.set(c.hash, o)
      o = buf.writeUInt32LE(c.size, o + HASH_BYTES)
    }
  }
  createHash('sha256').update(buf.subarray(0, o)).digest().copy(buf, o)
  return buf
}

/** Throws on anything unexpected; the caller turns that into an empty cache. */
function parse (buf: Buffer, chunkerId: string): Map<string, Entry> {
  const body = buf.length - HASH_BYTES
  if (body < 14 || !createHash('sha256').update(buf.subarray(0, body)).digest().equals(buf.subarray(body))) throw new Error('corrupt')
  if (buf.readUInt32LE(0) !== MAGIC || buf.readUInt32LE(4) !== FORMAT_VERSION) throw new Error('other format')
  const idLen = buf.readUInt16LE(8)
  if (buf.toString('utf8', 10, 10 + idLen) !== chunkerId) throw new Error('other chunker')
  let o = 10 + idLen
  const count = buf.readUInt32LE(o)
  o += 4
  const out = new Map<string, Entry>()
  for (let i = 0; i < count; i++) {
    const pl = buf.readUInt16LE(o)
    const p = buf.toString('utf8', o + 2, o + 2 + pl)
    o += 2 + pl
    const e: Entry = {
      size: buf.readBigUInt64LE(o),
      mtimeNs: buf.readBigInt64LE(o + 8),
      ctimeNs: buf.readBigInt64LE(o + 16),
      ino: buf.readBigUInt64LE(o + 24),
      chunks: new Array<ChunkRef>(buf.readUInt32LE(o + 32)),
      seen: 0
    }
    o += 36
    if (o + e.chunks.length * CHUNK_BYTES > body) throw new Error('truncated')
    for (let j = 0; j < e.chunks.length; j++) {
      e.chunks[j] = { hash: buf.subarray(o, o + HASH_BYTES), size: buf.readUInt32LE(o + HASH_BYTES) }
      o += CHUNK_BYTES
    }
    if (addsUp(e.chunks, e.size)) out.set(p, e)
  }
  if (o !== body) throw new Error('trailing bytes')
  return out
}

/** Whether the chunks' sizes add up to `size`. */
function addsUp (chunks: ChunkRef[], size: bigint): boolean {
  let sum = 0
  for (const c of chunks) sum += c.size
  return BigInt(sum) === size
}

/** Milliseconds, rounded down (also before 1970), from nanoseconds. */
export function floorMs (ns: bigint): number {
  const ms = ns / 1_000_000n
  return Number(ns < 0n && ms * 1_000_000n !== ns ? ms - 1n : ms)
}
