/**
 * Path safety for workspace sync. Every name and relative path that comes from a peer passes
 * through here before it touches the disk, and every write resolves its target with
 * `safeResolve`, so that neither a hostile tree (`..`, absolute paths, separators hidden in
 * names) nor a symlink planted in the copy can send a write outside the workspace.
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import { VgridError } from '../common/errors.js'
import { MAX_NAME_BYTES } from './types.js'

// An unpaired UTF-16 surrogate cannot be written as UTF-8: it would reach the disk as U+FFFD
// and no longer match the name in the tree.
const LONE_SURROGATE_RE = /\p{Cs}/u

/** Why `name` cannot be one path component, or undefined when it can. */
export function nameProblem (name: unknown): string | undefined {
  if (typeof name !== 'string') return 'is not a string'
  if (name === '') return 'is empty'
  if (name === '.' || name === '..') return `is '${name}'`
  // '\\' is legal on Linux but a separator on Windows; refusing it everywhere keeps a tree
  // made on one system safe to write on the other.
  if (name.includes('/') || name.includes('\\')) return 'contains a path separator'
  if (name.includes('\0')) return 'contains a NUL byte'
  if (LONE_SURROGATE_RE.test(name)) return 'is not valid Unicode'
  // UTF-8 is at most 3 bytes per UTF-16 unit: only long names need the exact count.
  if (name.length * 3 > MAX_NAME_BYTES && Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) {
    return `is longer than ${MAX_NAME_BYTES} bytes`
  }
  return undefined
}

/** Throws ERR_UNSAFE_PATH unless `name` is a safe single path component. */
export function checkName (name: string): string {
  const problem = nameProblem(name)
  if (problem !== undefined) throw new VgridError('ERR_UNSAFE_PATH', `the name ${quote(name)} ${problem}`)
  return name
}

/** Why `p` is not a safe '/'-separated relative path, or undefined when it is. */
export function relPathProblem (p: unknown): string | undefined {
  if (typeof p !== 'string') return 'is not a string'
  if (p === '') return 'is empty'
  if (p.startsWith('/')) return 'is absolute'
  for (const part of p.split('/')) {
    const problem = nameProblem(part)
    if (problem !== undefined) return `has a component that ${problem}`
  }
  return undefined
}

/** Throws ERR_UNSAFE_PATH unless `p` is relative, '/'-separated, and every part passes checkName. */
export function checkRelPath (p: string): string {
  const problem = relPathProblem(p)
  if (problem !== undefined) throw new VgridError('ERR_UNSAFE_PATH', `the path ${quote(p)} ${problem}`)
  return p
}

/**
 * The absolute path of `relPath` inside `root`, refused (ERR_UNSAFE_PATH) when a parent
 * component that exists on disk is a symlink or not a directory. The last component may be
 * anything (a writer replaces it by rename, which never follows it); parents that do not exist
 * yet are fine (the writer creates them as real directories). `root` itself is trusted.
 */
export async function safeResolve (root: string, relPath: string): Promise<string> {
  checkRelPath(relPath)
  const parts = relPath.split('/')
  let dir = root
  for (let i = 0; i < parts.length - 1; i++) {
    dir = path.join(dir, parts[i]!)
    const kind = await lstatKind(dir)
    if (kind === 'missing') break
    if (kind !== 'dir') {
      throw new VgridError('ERR_UNSAFE_PATH',
        `refusing ${quote(relPath)}: ${quote(parts.slice(0, i + 1).join('/'))} is ${kind === 'link' ? 'a symlink' : 'not a directory'}`,
        'a symlink inside the workspace copy is never followed when writing')
    }
  }
  return path.join(root, ...parts)
}

/**
 * `safeResolve` for many paths in one pass (materialising a tree): directories already found
 * to be real are not looked at again. Only valid while nothing but the caller changes the
 * tree under `root`; make a new one for each pass.
 */
export function createSafeResolver (root: string): (relPath: string) => Promise<string> {
  const realDirs = new Set<string>()
  return async (relPath) => {
    checkRelPath(relPath)
    const parts = relPath.split('/')
    let rel = ''
    for (let i = 0; i < parts.length - 1; i++) {
      rel = rel === '' ? parts[i]! : `${rel}/${parts[i]!}`
      if (realDirs.has(rel)) continue
      const kind = await lstatKind(path.join(root, rel))
      if (kind === 'missing') break
      if (kind !== 'dir') {
        throw new VgridError('ERR_UNSAFE_PATH',
          `refusing ${quote(relPath)}: ${quote(rel)} is ${kind === 'link' ? 'a symlink' : 'not a directory'}`,
          'a symlink inside the workspace copy is never followed when writing')
      }
      realDirs.add(rel)
    }
    return path.join(root, ...parts)
  }
}

/**
 * Whether a symlink at `linkPathRel` (relative to the workspace root) with this target points
 * outside the workspace: an absolute target, or one whose `..` climb past the root. Decided
 * on the text alone, as the link would resolve if no component of the target were itself a
 * link; such links are kept in trees but never followed by sync.
 */
export function isEscapingLink (linkPathRel: string, target: string): boolean {
  if (target === '' || target.startsWith('/') || target.includes('\0')) return true
  const stack = linkPathRel.split('/').filter((p) => p !== '' && p !== '.')
  stack.pop() // the link's own name: its target is relative to its directory
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') {
      if (stack.length === 0) return true
      stack.pop()
    } else {
      stack.push(part)
    }
  }
  return false
}

type Kind = 'dir' | 'link' | 'other' | 'missing'

async function lstatKind (p: string): Promise<Kind> {
  try {
    const st = await fs.lstat(p)
    return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'other'
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing'
    throw err
  }
}

function quote (s: string): string {
  return JSON.stringify(s.length > 300 ? s.slice(0, 300) + '…' : s)
}

/**
 * Orders names by the bytes of their UTF-8 form (the order of directory records) without
 * encoding them: that is code-point order, which differs from JS's UTF-16 order only where a
 * surrogate pair meets a character in U+E000…U+FFFF.
 */
export function compareNames (a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) return codePointRank(x) - codePointRank(y)
  }
  return a.length - b.length
}

function codePointRank (unit: number): number {
  if (unit < 0xd800) return unit
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000
}

/** The directory of a relative path ('/'-separated): '' for an entry of the root. */
export function parentRel (rel: string): string {
  const i = rel.lastIndexOf('/')
  return i < 0 ? '' : rel.slice(0, i)
}
