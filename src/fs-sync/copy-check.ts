/**
 * Before the executor reuses its copy of a workspace, it checks that the copy still holds the
 * tree it is recorded to hold. Anything may have written there since the last sync: a process
 * a command left running (`setsid sleep 600 && …`), another guest, a person. Trusting the
 * record would run the next command on those files, and the outputs scan after it would send
 * them to the submitter as if the command had made them.
 *
 * The check is rsync's quick check done against the record, without reading any file: one
 * readdir per directory and one lstat per file or link, compared by type, size, mtime and
 * exec bit, a link's target, and, where the copy's stat cache knows the file, its ctime and
 * inode (no write can keep those, so an edit that restores size and mtime is seen too).
 * Entries that appeared are found by the readdirs; those the scan of the copy would leave
 * out (the ignore rules) stay, as every sync has left them (a build's caches).
 *
 * The walk never follows a link: a directory is entered only when lstat semantics say it is
 * one, and a `.vgridignore` is opened with O_NOFOLLOW. What differs is returned as paths;
 * `markChanged` turns them into a base that says "unknown" there, so the sync that follows
 * removes or rewrites them from the submitter's tree like any other change.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, type BigIntStats, type Dirent } from 'node:fs'
import { IGNORE_FILE, IgnoreRules } from './ignore-rules.js'
import { nameProblem } from './paths.js'
import { floorMs, type StatCache } from './stat-cache.js'
import type { DirNode, FileNode, LinkNode, Node } from './types.js'

/** lstat calls made without yielding to the event loop (as the scan does: ~1–2 ms). */
export const CHECK_STAT_BATCH = 256
/** A `.vgridignore` larger than this is not read here (the entries it covers count as changed). */
const MAX_IGNORE_FILE_BYTES = 1024 * 1024

export interface CopyCheckOptions {
  /** The copy's stat cache: files it knows are also compared by ctime and inode. */
  statCache?: StatCache
  /** Built-in ignore patterns, as the copy's scans use them (default DEFAULT_IGNORES). */
  defaultIgnores?: readonly string[]
  signal?: AbortSignal
}

export type CopyCheck =
  /** Relative paths ('/'-separated) whose entry differs from the record, appeared or vanished. */
  | { changed: string[] }
  /** The copy cannot be described against the record (why): check it from scratch. */
  | { unusable: string }

/**
 * A node no disk entry and no tree can equal (a link target never holds a NUL): in a base it
 * makes the diff remove or rewrite the path whatever the next tree holds there.
 */
const UNKNOWN: LinkNode = Object.freeze({ kind: 'link', target: '\0changed in the copy' }) as LinkNode

export async function checkCopy (dir: string, base: DirNode, opts: CopyCheckOptions = {}): Promise<CopyCheck> {
  const root = lstatSync(dir, { throwIfNoEntry: false })
  if (root === undefined || !root.isDirectory()) return { unusable: 'the copy is not a directory' }
  const walk = new Walk(opts)
  try {
    await walk.dir(dir, '', base, IgnoreRules.root(undefined, opts.defaultIgnores))
  } catch (err) {
    if (err instanceof Unusable) return { unusable: err.message }
    throw err
  }
  return { changed: walk.changed }
}

/** `base` with every path of `changed` made UNKNOWN; `base` itself is not modified. */
export function markChanged (base: DirNode, changed: readonly string[]): DirNode {
  const copy = (d: DirNode): DirNode => ({ kind: 'dir', hash: new Uint8Array(0), entries: new Map(d.entries) })
  const root = copy(base)
  // Directories copied so far: each lies at one path, unlike the originals (decodeTree shares
  // equal subtrees between paths), and has no hash, so the diff looks inside it.
  const copies = new Set<DirNode>([root])
  for (const rel of changed) {
    const parts = rel.split('/')
    let at: DirNode | undefined = root
    for (let i = 0; i < parts.length - 1 && at !== undefined; i++) {
      const child: Node | undefined = at.entries.get(parts[i]!)
      if (child?.kind !== 'dir') { at = undefined; break }
      let mine: DirNode = child
      if (!copies.has(mine)) {
        mine = copy(child)
        copies.add(mine)
        at.entries.set(parts[i]!, mine)
      }
      at = mine
    }
    // Under a path already unknown: the whole of it goes anyway.
    if (at !== undefined) at.entries.set(parts[parts.length - 1]!, UNKNOWN)
  }
  return root
}

class Unusable extends Error {}

class Walk {
  readonly changed: string[] = []
  private stats = 0

  constructor (private readonly opts: CopyCheckOptions) {}

  async dir (abs: string, rel: string, node: DirNode, rules: IgnoreRules): Promise<void> {
    this.opts.signal?.throwIfAborted()
    let dirents: Dirent[]
    try {
      dirents = readdirSync(abs, { withFileTypes: true })
    } catch (err) {
      if (rel === '') throw new Unusable(`the copy could not be read: ${(err as Error).message}`)
      this.changed.push(rel)
      return
    }
    const prefix = abs + '/'
    const ignoreFile = node.entries.get(IGNORE_FILE)
    if (ignoreFile?.kind === 'file' && dirents.some((d) => d.name === IGNORE_FILE)) {
      // Only the recorded file's rules: a changed one is rewritten, and what it would have
      // kept is then not in the record, so it goes too (the safe side).
      const content = this.readIgnoreFile(prefix + IGNORE_FILE, join(rel, IGNORE_FILE), ignoreFile)
      if (content !== undefined) rules = rules.withFile(rel, content)
    }
    let seen = 0
    for (const d of dirents) {
      const relPath = join(rel, d.name)
      const want = node.entries.get(d.name)
      if (want === undefined) {
        const isDir = d.isDirectory() || (!known(d) && this.lstat(prefix + d.name)?.isDirectory() === true)
        if (rules.ignores(relPath, isDir)) continue
        // The outputs scan refuses such a name, so no tree can say "remove it": start afresh.
        if (nameProblem(d.name) !== undefined) throw new Unusable(`an entry of the copy has a name no tree can hold: ${JSON.stringify(relPath)}`)
        this.changed.push(relPath)
        continue
      }
      seen++
      if (want.kind === 'dir') {
        const isDir = known(d) ? d.isDirectory() : this.lstat(prefix + d.name)?.isDirectory() === true
        if (isDir) await this.dir(prefix + d.name, relPath, want, rules)
        else this.changed.push(relPath)
        continue
      }
      if (++this.stats % CHECK_STAT_BATCH === 0) await new Promise((resolve) => setImmediate(resolve))
      const st = this.lstat(prefix + d.name)
      if (st === undefined || !this.matches(prefix + d.name, relPath, st, want)) this.changed.push(relPath)
    }
    if (seen < node.entries.size) {
      const present = new Set(dirents.map((d) => d.name))
      for (const name of node.entries.keys()) if (!present.has(name)) this.changed.push(join(rel, name))
    }
  }

  private matches (abs: string, relPath: string, st: BigIntStats, want: Node): boolean {
    if (want.kind === 'link') {
      if (!st.isSymbolicLink()) return false
      try { return readlinkSync(abs) === want.target } catch { return false }
    }
    if (want.kind !== 'file') return false
    if (!st.isFile() || st.size !== BigInt(want.size) || floorMs(st.mtimeNs) !== want.mtimeMs || ((st.mode & 0o100n) !== 0n) !== want.exec) return false
    // Size and mtime as recorded, yet rewritten since: only ctime and inode tell (touch -r, cp -p).
    const k = this.opts.statCache?.peek(relPath)
    return k === undefined || k.size !== st.size || k.mtimeNs !== st.mtimeNs || (k.ctimeNs === st.ctimeNs && k.ino === st.ino)
  }

  private lstat (abs: string): BigIntStats | undefined {
    try {
      return lstatSync(abs, { bigint: true })
    } catch {
      return undefined
    }
  }

  /** The recorded `.vgridignore`, read without following a link, when it still is what the record says. */
  private readIgnoreFile (abs: string, relPath: string, want: FileNode): string | undefined {
    const { size } = want
    if (size > MAX_IGNORE_FILE_BYTES) return undefined
    let fd: number
    try {
      fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
    } catch {
      return undefined
    }
    try {
      const st = fstatSync(fd, { bigint: true })
      if (!this.matches(abs, relPath, st, want)) return undefined
      const buf = Buffer.allocUnsafe(size)
      let got = 0
      while (got < size) {
        const n = readSync(fd, buf, got, size - got, got)
        if (n === 0) return undefined
        got += n
      }
      return buf.toString('utf8')
    } catch {
      return undefined
    } finally {
      closeSync(fd)
    }
  }
}

function known (d: Dirent): boolean {
  return d.isFile() || d.isDirectory() || d.isSymbolicLink() || d.isFIFO() || d.isSocket() || d.isCharacterDevice() || d.isBlockDevice()
}

function join (rel: string, name: string): string {
  return rel === '' ? name : `${rel}/${name}`
}
