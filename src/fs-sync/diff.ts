/**
 * What changed between two trees, for the executor (bring its copy up to the submitter's
 * tree) and for outputs (what a task changed in its copy).
 *
 * "Changed" means content or the executable bit for a file, the target for a link: an mtime
 * that moved alone is not a change. That keeps a task that rewrites a file with the same bytes
 * from sending it back and from raising a conflict; whoever writes a changed file still sets
 * its mtime from the tree. Pass `{ mtime: true }` to also report mtime-only differences.
 */
import { hasHash, hashEquals } from './hash.js'
import { compareNames } from './paths.js'
import type { Change, DirNode, FileNode, LinkNode, Node } from './types.js'

export interface DiffOptions {
  /** Also report files whose only difference is their mtime, as 'modify'. */
  mtime?: boolean
}

/**
 * The changes that turn `base` (nothing when undefined) into `next`, in a deterministic order:
 * by name (UTF-8 byte order) depth-first; a directory's 'add' comes before what it holds and
 * its 'delete' after; a path that changes kind (file ↔ directory ↔ link) is a 'delete' of the
 * old node (and all below it) followed by an 'add' of the new one. Equal subtrees are skipped
 * by hash when both trees have them set (encodeTree / decodeTree).
 */
export function diffTrees (base: DirNode | undefined, next: DirNode, opts: DiffOptions = {}): Change[] {
  const out: Change[] = []
  if (base === undefined) addAll(next, '', out)
  else diffDirs(base, next, '', out, opts.mtime === true)
  return out
}

/** Whether two trees are equal (by root hash when both are set, else entry by entry). */
export function treeEquals (a: DirNode, b: DirNode): boolean {
  if (hasHash(a) && hasHash(b)) return hashEquals(a.hash, b.hash)
  return diffTrees(a, b).length === 0
}

/** Same content (chunks, hence size) and executable bit; mtime is not compared. */
export function fileEquals (a: FileNode, b: FileNode): boolean {
  if (a.size !== b.size || a.exec !== b.exec || a.chunks.length !== b.chunks.length) return false
  for (let i = 0; i < a.chunks.length; i++) {
    const x = a.chunks[i]!
    const y = b.chunks[i]!
    if (x.size !== y.size || !hashEquals(x.hash, y.hash)) return false
  }
  return true
}

/** Same kind and, by kind: fileEquals, the same link target, equal directory trees. */
export function nodeEquals (a: Node, b: Node): boolean {
  if (a.kind === 'file') return b.kind === 'file' && fileEquals(a, b)
  if (a.kind === 'link') return b.kind === 'link' && a.target === (b as LinkNode).target
  return b.kind === 'dir' && treeEquals(a, b)
}

function diffDirs (base: DirNode, next: DirNode, prefix: string, out: Change[], mtime: boolean): void {
  if (hasHash(base) && hasHash(next) && hashEquals(base.hash, next.hash)) return
  const names = new Set([...base.entries.keys(), ...next.entries.keys()])
  for (const name of [...names].sort(compareNames)) {
    const path = prefix === '' ? name : `${prefix}/${name}`
    const old = base.entries.get(name)
    const now = next.entries.get(name)
    if (now === undefined) {
      deleteAll(old!, path, out)
    } else if (old === undefined) {
      addAll(now, path, out)
    } else if (old.kind !== now.kind) {
      deleteAll(old, path, out)
      addAll(now, path, out)
    } else if (old.kind === 'dir') {
      diffDirs(old, now as DirNode, path, out, mtime)
    } else if (old.kind === 'file') {
      const f = now as FileNode
      if (!fileEquals(old, f) || (mtime && old.mtimeMs !== f.mtimeMs)) out.push({ path, kind: 'modify', node: now, old })
    } else if (old.target !== (now as LinkNode).target) {
      out.push({ path, kind: 'modify', node: now, old })
    }
  }
}

/** `node` at `path` and, for a directory, everything below it, parents first. */
function addAll (node: Node, path: string, out: Change[]): void {
  if (path !== '') out.push({ path, kind: 'add', node })
  if (node.kind !== 'dir') return
  for (const name of [...node.entries.keys()].sort(compareNames)) {
    addAll(node.entries.get(name)!, path === '' ? name : `${path}/${name}`, out)
  }
}

/** Everything below `node` and then `node` itself, children first. */
function deleteAll (node: Node, path: string, out: Change[]): void {
  if (node.kind === 'dir') {
    for (const name of [...node.entries.keys()].sort(compareNames)) {
      deleteAll(node.entries.get(name)!, `${path}/${name}`, out)
    }
  }
  out.push({ path, kind: 'delete', old: node })
}
