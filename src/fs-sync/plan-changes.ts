/**
 * Turns a diff into the order a writer must follow on disk, whoever writes (materialize on the
 * executor, applyOutputs on the submitter):
 *
 * 1. removals, deepest first: every path that goes away, and the old node of a path whose kind
 *    changes (a file that becomes a directory is removed before the directory is made). The
 *    descendants of a removed directory are listed one by one even if the diff named only the
 *    directory, so a writer that must check each local file (applyOutputs) sees them all;
 * 2. directories to create, parents first (with everything in a new directory listed, for the
 *    same reason);
 * 3. files;
 * 4. symlinks, last: once a link exists nothing of ours writes again, so no write can pass
 *    through a link the tree itself just made, whatever order the files come in.
 *
 * A directory whose contents changed but that stays a directory needs nothing: its children
 * are changes of their own.
 */
import { checkName } from './paths.js'
import { MAX_TREE_DEPTH, type Change, type DirNode, type FileNode, type LinkNode, type Node } from './types.js'
import { VgridError } from '../common/errors.js'

export interface Removal {
  path: string
  old: Node
  /** The path gets a node of another kind afterwards (not a plain delete). */
  replaced: boolean
}

export interface Addition<N extends Node> {
  path: string
  node: N
  /** What the base / snapshot held at this path (same kind), if anything. */
  old?: N
}

export interface ChangePlan {
  removals: Removal[]
  dirs: Array<Addition<DirNode>>
  files: Array<Addition<FileNode>>
  links: Array<Addition<LinkNode>>
}

function depth (p: string): number {
  let d = 1
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47 /* '/' */) d++
  return d
}

export function planChanges (changes: readonly Change[]): ChangePlan {
  const plan: ChangePlan = { removals: [], dirs: [], files: [], links: [] }
  const removing = new Set<string>()
  const remove = (path: string, old: Node): void => {
    if (removing.has(path)) return
    removing.add(path)
    plan.removals.push({ path, old, replaced: false })
    if (old.kind === 'dir') {
      for (const [name, child] of old.entries) remove(`${path}/${name}`, child)
    }
  }
  const adding = new Set<string>()
  const add = (path: string, node: Node, old: Node | undefined): void => {
    if (adding.has(path)) return
    adding.add(path)
    if (node.kind === 'dir') {
      // A directory that stays one needs nothing: its children are changes of their own.
      if (old !== undefined) return
      plan.dirs.push({ path, node })
      for (const [name, child] of node.entries) add(`${path}/${name}`, child, undefined)
    } else if (node.kind === 'file') {
      plan.files.push(old === undefined ? { path, node } : { path, node, old: old as FileNode })
    } else {
      plan.links.push(old === undefined ? { path, node } : { path, node, old: old as LinkNode })
    }
  }
  for (const c of changes) {
    const { node, old } = c
    if (c.kind === 'delete') {
      if (old !== undefined) remove(c.path, old)
      continue
    }
    if (node === undefined) continue
    if (old !== undefined && old.kind !== node.kind) {
      remove(c.path, old)
      add(c.path, node, undefined)
    } else {
      add(c.path, node, old)
    }
  }
  for (const r of plan.removals) r.replaced = adding.has(r.path)
  plan.removals.sort((a, b) => depth(b.path) - depth(a.path))
  plan.dirs.sort((a, b) => depth(a.path) - depth(b.path))
  return plan
}

/**
 * Refuses (ERR_UNSAFE_PATH) a tree with a name no scan could have produced ('..', a separator
 * hidden in a name, NUL, …) or deeper than MAX_TREE_DEPTH, before anything is written.
 * decodeTree checks the same on receipt; this holds for trees built any other way.
 */
export function assertTreeNames (root: DirNode): void {
  const walk = (dir: DirNode, level: number): void => {
    if (level > MAX_TREE_DEPTH) throw new VgridError('ERR_UNSAFE_PATH', `the tree is deeper than ${MAX_TREE_DEPTH} levels`)
    for (const [name, child] of dir.entries) {
      checkName(name)
      if (child.kind === 'dir') walk(child, level + 1)
    }
  }
  walk(root, 1)
}
