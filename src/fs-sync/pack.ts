/**
 * One pack of the chunk store: `pack-NNNNNN.dat` holds blobs back to back after an 8-byte
 * header, `pack-NNNNNN.idx` says where each one is, in fixed 40-byte entries (hash 32, offset
 * u32 LE, length u32 LE) after its own 8-byte header. Fixed-size binary entries load with no
 * decoder (160k blobs, a full 10 GiB store, is ~6 MiB of index), and appending is one write.
 *
 * The index is appended only after the data it describes is written, and a pack grows only at
 * its end, so a crash leaves at most a torn tail: data with no entry, a partial entry, or
 * (power loss without fsync) entries past the end of the data. `loadPack` keeps the longest
 * prefix of entries that are contiguous and lie inside the data file and cuts both files back
 * to it. Nothing is fsynced: the store is a cache, and `ChunkStore.get` re-hashes every blob it
 * reads, so whatever a crash leaves can cost a fetch but never a wrong file.
 */
import fs from 'node:fs'
import fsp, { type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from '../common/log.js'

export const PACK_HEADER_BYTES = 8
export const INDEX_HEADER_BYTES = 8
export const INDEX_ENTRY_BYTES = 40
/** Offsets are u32, so a pack stays below 4 GiB: the largest pack size allowed, plus a blob. */
export const MAX_PACK_BYTES = 2 ** 31
// 'vgpk' / 'vgix' and a format version; a file with another header is dropped at load
const PACK_MAGIC = Buffer.from('vgpk\x00\x00\x00\x01', 'latin1')
const INDEX_MAGIC = Buffer.from('vgix\x00\x00\x00\x01', 'latin1')

export const PACK_NAME_RE = /^pack-(\d{6,})\.(dat|idx)$/

export function packFileName (id: number, ext: 'dat' | 'idx'): string {
  return `pack-${String(id).padStart(6, '0')}.${ext}`
}

export interface IndexEntry {
  /** The 32 hash bytes as a latin1 string: the store's map key. */
  key: string
  offset: number
  length: number
}

/**
 * The entries of an index file that describe whole blobs of a data file of `datBytes`, and
 * the keys of the whole entries after them (blobs a torn tail lost: their data is gone).
 */
export function parseIndex (idx: Buffer, datBytes: number, maxBlobBytes: number): { entries: IndexEntry[], lostKeys: string[] } {
  const entries: IndexEntry[] = []
  const lostKeys: string[] = []
  if (idx.length < INDEX_HEADER_BYTES || !idx.subarray(0, INDEX_HEADER_BYTES).equals(INDEX_MAGIC)) return { entries, lostKeys }
  let end = PACK_HEADER_BYTES
  let p = INDEX_HEADER_BYTES
  for (; p + INDEX_ENTRY_BYTES <= idx.length; p += INDEX_ENTRY_BYTES) {
    const offset = idx.readUInt32LE(p + 32)
    const length = idx.readUInt32LE(p + 36)
    // blobs are appended back to back, so anything else is a torn or garbled tail
    if (offset !== end || length > maxBlobBytes || offset + length > datBytes) break
    entries.push({ key: idx.toString('latin1', p, p + 32), offset, length })
    end = offset + length
  }
  for (; p + INDEX_ENTRY_BYTES <= idx.length; p += INDEX_ENTRY_BYTES) lostKeys.push(idx.toString('latin1', p, p + 32))
  return { entries, lostKeys }
}

/** Index entries for blobs written at `offsets` of a pack. */
export function encodeIndex (keys: string[], offsets: number[], lengths: number[]): Buffer {
  const buf = Buffer.allocUnsafe(keys.length * INDEX_ENTRY_BYTES)
  for (let i = 0, p = 0; i < keys.length; i++, p += INDEX_ENTRY_BYTES) {
    buf.write(keys[i]!, p, 32, 'latin1')
    buf.writeUInt32LE(offsets[i]!, p + 32)
    buf.writeUInt32LE(lengths[i]!, p + 36)
  }
  return buf
}

/**
 * Read handles kept open, least recently read first (a Set iterates in insertion order). A
 * store of 10 GiB has ~160 packs; a bigger cap would otherwise run out of descriptors.
 */
export class ReadHandles {
  private readonly open = new Set<Pack>()
  constructor (private readonly max: number) {}

  used (pack: Pack): void {
    this.open.delete(pack)
    this.open.add(pack)
    if (this.open.size <= this.max) return
    for (const p of this.open) {
      if (this.open.size <= this.max) break
      if (p.closeReaderIfIdle()) this.open.delete(p)
    }
  }

  forget (pack: Pack): void { this.open.delete(pack) }
}

export class Pack {
  readonly datPath: string
  readonly idxPath: string
  /** End of the data file once every queued write is done. */
  end = PACK_HEADER_BYTES
  /** Index entries, written or queued. */
  entries = 0
  /** Keys of the blobs indexed here (some may since be superseded by a newer pack). */
  readonly keys: string[] = []
  /** Last time a blob of this pack was put, read or touched (ms); eviction goes by it. */
  lastUsed: number
  /** When lastUsed was last written to the data file's mtime. */
  usageSavedAt: number
  /** Batches queued for this pack and not yet written. */
  pendingBatches = 0
  /** A write failed: the pack takes no more blobs (what it holds stays readable). */
  failed = false
  removed = false
  /** The store closed: the read handle goes as soon as no read uses it. */
  private retired = false
  private onDisk: boolean
  private reader?: Promise<FileHandle>
  private readers = 0
  private datW?: FileHandle
  private idxW?: FileHandle
  private idxBytes = INDEX_HEADER_BYTES

  /** `existing`: a pack found on disk; else a new one, created at `now` (ms). */
  constructor (dir: string, readonly id: number, private readonly handles: ReadHandles, now: number, existing?: { datBytes: number, entries: number, mtimeMs: number }) {
    this.datPath = path.join(dir, packFileName(id, 'dat'))
    this.idxPath = path.join(dir, packFileName(id, 'idx'))
    this.onDisk = existing !== undefined
    this.lastUsed = this.usageSavedAt = existing?.mtimeMs ?? now
    if (existing !== undefined) {
      this.end = existing.datBytes
      this.entries = existing.entries
      this.idxBytes = INDEX_HEADER_BYTES + existing.entries * INDEX_ENTRY_BYTES
    }
  }

  /** What the pack takes on disk once its queued writes are done. */
  get bytes (): number {
    return this.end + INDEX_HEADER_BYTES + this.entries * INDEX_ENTRY_BYTES
  }

  /** Holds at least one blob (a new pack has no files until its first write). */
  get hasData (): boolean {
    return this.entries > 0
  }

  /** Writes `data` at `at` (the current end of what was written), then its index entries. */
  async append (data: Uint8Array, at: number, index: Uint8Array): Promise<void> {
    if (this.datW === undefined || this.idxW === undefined) await this.openForWriting()
    await writeAll(this.datW!, data, at)
    await writeAll(this.idxW!, index, this.idxBytes)
    this.idxBytes += index.length
  }

  private async openForWriting (): Promise<void> {
    if (this.onDisk) {
      this.datW = await fsp.open(this.datPath, 'r+')
      this.idxW = await fsp.open(this.idxPath, 'r+')
      return
    }
    // 'wx': a pack number is never reused, so an existing file means something is wrong
    this.datW = await fsp.open(this.datPath, 'wx+')
    await writeAll(this.datW, PACK_MAGIC, 0)
    this.idxW = await fsp.open(this.idxPath, 'wx')
    await writeAll(this.idxW, INDEX_MAGIC, 0)
    this.onDisk = true
  }

  /** Closes the write handles once the pack is sealed and its last batch written. */
  async finishWriting (): Promise<void> {
    const handles = [this.datW, this.idxW]
    this.datW = this.idxW = undefined
    await Promise.all(handles.map(async (h) => { await h?.close() }))
  }

  /** `length` bytes at `offset`, or undefined when the pack was removed or the file is short. */
  async read (offset: number, length: number): Promise<Buffer | undefined> {
    if (this.removed) return undefined
    this.readers++
    try {
      const opening = this.reader ??= fsp.open(this.datPath, 'r')
      let fh: FileHandle
      try {
        fh = await opening
      } catch (err) {
        if (this.reader === opening) this.reader = undefined
        if (this.removed) return undefined
        throw err
      }
      this.handles.used(this)
      const buf = Buffer.allocUnsafe(length)
      let n = 0
      while (n < length) {
        const { bytesRead } = await fh.read(buf, n, length - n, offset + n)
        if (bytesRead === 0) return undefined
        n += bytesRead
      }
      return buf
    } finally {
      this.readers--
      if (this.removed || this.retired) this.closeReaderIfIdle()
    }
  }

  /** Closes the read handle unless a read is using it; true when none is left open. */
  closeReaderIfIdle (): boolean {
    if (this.readers > 0) return false
    const reader = this.reader
    this.reader = undefined
    // a handle that failed to open has nothing to close
    reader?.then(async (fh) => { await fh.close() }, () => {}).catch(() => {})
    return true
  }

  retire (): void {
    this.retired = true
    this.closeReaderIfIdle()
  }

  /** Records lastUsed as the data file's mtime, so it survives a restart. */
  async saveUsage (): Promise<void> {
    this.usageSavedAt = this.lastUsed
    if (!this.onDisk || this.removed) return
    const t = this.lastUsed / 1000
    await fsp.utimes(this.datPath, t, t).catch(() => {})
  }

  /** Deletes the files; reads already under way finish on the unlinked file. */
  async remove (): Promise<void> {
    this.removed = true
    this.handles.forget(this)
    this.closeReaderIfIdle()
    await this.finishWriting().catch(() => {})
    await Promise.all([fsp.rm(this.datPath, { force: true }), fsp.rm(this.idxPath, { force: true })])
  }
}

async function writeAll (fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let n = 0
  while (n < data.length) {
    const { bytesWritten } = await fh.write(data, n, data.length - n, position + n)
    n += bytesWritten
  }
}

async function statOrUndefined (file: string): Promise<fs.Stats | undefined> {
  try {
    return await fsp.stat(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

async function readHeader (file: string): Promise<Buffer> {
  const fh = await fsp.open(file, 'r')
  try {
    const buf = Buffer.alloc(PACK_HEADER_BYTES)
    const { bytesRead } = await fh.read(buf, 0, PACK_HEADER_BYTES, 0)
    return buf.subarray(0, bytesRead)
  } finally {
    await fh.close()
  }
}

/** What loadPack cut from a pack, for the owner's log and for the runs that miss what it held. */
export interface PackRepair {
  /** Bytes cut from the end of the data file, and of the index file. */
  dataBytes: number
  indexBytes: number
  /** Keys of the blobs whose index entries were whole but whose data was gone. */
  lostKeys: string[]
  /** One line for the log: which pack, what was cut, what was lost. */
  summary: string
}

/**
 * Loads pack `id` of `dir` with the entries that survived: a torn tail is cut off both files
 * (so sizes are exact and the pack can take appends again); a pack with no whole blob, a
 * missing half or an unknown header is deleted. Undefined when nothing is left. A cut that
 * lost something is logged as a warning: the owner sees the disk or the agent misbehaved.
 */
export async function loadPack (dir: string, id: number, handles: ReadHandles, maxBlobBytes: number, log: Logger): Promise<{ pack: Pack, entries: IndexEntry[], repair?: PackRepair } | undefined> {
  const datPath = path.join(dir, packFileName(id, 'dat'))
  const idxPath = path.join(dir, packFileName(id, 'idx'))
  const drop = async (why: string, held: number): Promise<undefined> => {
    // A pack created just before a crash holds no blob yet: nothing was lost, nothing to say.
    if (held > 0) log.warn(`dropped pack ${id} of ${dir} (${held} bytes): ${why}; its blobs are fetched again when a run needs them`)
    else log.debug(`dropping pack ${id}: ${why}`)
    await Promise.all([fsp.rm(datPath, { force: true }), fsp.rm(idxPath, { force: true })])
    return undefined
  }
  const [datStat, idxStat] = await Promise.all([statOrUndefined(datPath), statOrUndefined(idxPath)])
  const held = Math.max(0, (datStat?.size ?? 0) - PACK_HEADER_BYTES)
  if (datStat === undefined || idxStat === undefined) return await drop('half of it is missing', held)
  if (!(await readHeader(datPath)).equals(PACK_MAGIC)) return await drop('unknown data header', held)
  const { entries, lostKeys } = parseIndex(await fsp.readFile(idxPath), datStat.size, maxBlobBytes)
  if (entries.length === 0) return await drop('no whole blob', held)
  const last = entries[entries.length - 1]!
  const datBytes = last.offset + last.length
  const idxBytes = INDEX_HEADER_BYTES + entries.length * INDEX_ENTRY_BYTES
  let repair: PackRepair | undefined
  if (datStat.size > datBytes || idxStat.size > idxBytes) {
    const cut = { dataBytes: datStat.size - datBytes, indexBytes: idxStat.size - idxBytes }
    const lost = lostKeys.length > 0
      ? `${lostKeys.length} ${lostKeys.length === 1 ? 'blob' : 'blobs'} whose data was gone`
      : cut.dataBytes > 0 ? `${cut.dataBytes} bytes of data no index entry described` : 'a torn index entry'
    repair = { ...cut, lostKeys, summary: `pack ${id} of ${dir} had a torn tail (a crash or a full disk while it was written?): cut ${cut.dataBytes} data bytes and ${cut.indexBytes} index bytes, losing ${lost}` }
    log.warn(`${repair.summary}; what it held is fetched again when a run needs it`)
    await fsp.truncate(datPath, datBytes)
    await fsp.truncate(idxPath, idxBytes)
    // truncate moved the mtime, which is the pack's last use
    await fsp.utimes(datPath, datStat.atime, datStat.mtime)
  }
  const pack = new Pack(dir, id, handles, datStat.mtimeMs, { datBytes, entries: entries.length, mtimeMs: datStat.mtimeMs })
  return { pack, entries, ...(repair !== undefined ? { repair } : {}) }
}
