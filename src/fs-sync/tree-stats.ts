/**
 * Totals of a tree and the limits on its shape. The scanner and the decoder both end with
 * `checkTreeLimits`, so a tree this machine scans is never one a peer would refuse.
 *
 * Subtrees with equal hashes may be one shared object (decodeTree reuses them), so totals are
 * counted as the tree expands on disk, memoised per object: a small hostile tree that expands
 * to billions of entries costs as little to refuse as it cost to send.
 */
import { VgridError } from '../common/errors.js'
import { MAX_TREE_DEPTH, MAX_TREE_FILES, type DirNode, type Node, type TreeStats } from './types.js'

export interface SubtreeStats extends TreeStats {
  /** Levels of entries below this directory: 0 when empty, 1 when it holds only files. */
  height: number
}

/**
 * Totals of `root`. `dirs` counts the root itself; `chunks` counts chunk references (a chunk
 * two files share counts twice; a scan's `sources.size` is the distinct count).
 */
export function treeStats (root: DirNode, memo = new WeakMap<DirNode, SubtreeStats>()): SubtreeStats {
  const known = memo.get(root)
  if (known !== undefined) return known
  const s: SubtreeStats = { files: 0, dirs: 1, links: 0, bytes: 0, chunks: 0, height: 0 }
  for (const node of root.entries.values()) {
    if (node.kind === 'file') {
      s.files++
      s.bytes += node.size
      s.chunks += node.chunks.length
      if (s.height < 1) s.height = 1
    } else if (node.kind === 'link') {
      s.links++
      if (s.height < 1) s.height = 1
    } else {
      const sub = treeStats(node, memo)
      s.files += sub.files
      s.dirs += sub.dirs
      s.links += sub.links
      s.bytes += sub.bytes
      s.chunks += sub.chunks
      if (s.height < sub.height + 1) s.height = sub.height + 1
    }
  }
  memo.set(root, s)
  return s
}

/** Entries of every kind below the root: what MAX_TREE_FILES bounds. */
export function entryCount (s: TreeStats): number {
  return s.files + s.links + s.dirs - 1
}

/**
 * Throws `code` when the tree is deeper than MAX_TREE_DEPTH or holds more than MAX_TREE_FILES
 * entries (files, links and directories alike: empty directories cost a peer as much to
 * write as files do).
 */
export function checkTreeLimits (s: SubtreeStats, code: 'ERR_BAD_MESSAGE' | 'ERR_WORKSPACE_TOO_LARGE'): void {
  const hint = code === 'ERR_WORKSPACE_TOO_LARGE' ? 'list what the task does not need in .vgridignore' : undefined
  if (s.height > MAX_TREE_DEPTH) {
    throw new VgridError(code, `the workspace tree is ${s.height} levels deep, past the limit of ${MAX_TREE_DEPTH}`, hint)
  }
  const n = entryCount(s)
  if (n > MAX_TREE_FILES) {
    throw new VgridError(code, `the workspace tree has ${n} entries, past the limit of ${MAX_TREE_FILES}`, hint)
  }
}

/** The node at a '/'-separated relative path of `tree`, if there is one. */
export function nodeAt (tree: DirNode, rel: string): Node | undefined {
  let node: Node | undefined = tree
  for (const name of rel.split('/')) {
    if (node?.kind !== 'dir') return undefined
    node = node.entries.get(name)
  }
  return node
}
