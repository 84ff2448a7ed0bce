/**
 * Where each incoming path of applyOutputs lands, given what happened to its parents: under an
 * ignored directory it is ignored; under a refused one it is refused too; under a directory
 * that was written beside the user's entry as a conflict copy it follows it there.
 */
import { MAX_NAME_BYTES } from './types.js'

export const CONFLICT_INFIX = '.vgrid-conflict-'

export type Target =
  | { rel: string, redirected: boolean }
  | { refusedParent: string }

export class Placement {
  private readonly ignoredDirs = new Map<string, boolean>()
  private readonly refusedDirs = new Set<string>()
  private readonly redirects = new Map<string, string>()

  constructor (private readonly isIgnored?: (relPath: string, isDir: boolean) => boolean) {}

  /**
   * Whether `rel` is excluded: each parent is asked first, as a directory (a walk never enters
   * an excluded directory, so the rules need not handle what is inside one), then the path.
   */
  ignored (rel: string, isDir: boolean): boolean {
    const isIgnored = this.isIgnored
    if (isIgnored === undefined) return false
    for (const parent of parents(rel)) {
      let v = this.ignoredDirs.get(parent)
      if (v === undefined) {
        v = isIgnored(parent, true)
        this.ignoredDirs.set(parent, v)
      }
      if (v) return true
    }
    return isIgnored(rel, isDir)
  }

  /** `rel` was not applied: nothing under it will be. */
  refuse (rel: string): void {
    this.refusedDirs.add(rel)
  }

  /** The directory `rel` was written at `to` instead: its content follows it. */
  redirect (rel: string, to: string): void {
    this.redirects.set(rel, to)
  }

  target (rel: string): Target {
    let at = rel
    let redirected = false
    for (const parent of parents(rel)) {
      if (this.refusedDirs.has(parent)) return { refusedParent: parent }
      const to = this.redirects.get(parent)
      if (to !== undefined) {
        // Deeper redirects come later in the loop and win, as they are inside this one.
        at = to + rel.slice(parent.length)
        redirected = true
      }
    }
    return { rel: at, redirected }
  }
}

/** 'a', 'a/b' for 'a/b/c'. */
function parents (rel: string): string[] {
  const out: string[] = []
  for (let i = rel.indexOf('/'); i !== -1; i = rel.indexOf('/', i + 1)) out.push(rel.slice(0, i))
  return out
}

/**
 * `dir/NAME.vgrid-conflict-TASK` for `dir/NAME`; NAME is cut (at a character boundary) when
 * the whole would pass MAX_NAME_BYTES, so a long name still gets its copy.
 */
export function conflictRelPath (rel: string, taskId: string): string {
  const slash = rel.lastIndexOf('/')
  const dir = slash === -1 ? '' : rel.slice(0, slash + 1)
  let name = rel.slice(slash + 1)
  const suffix = CONFLICT_INFIX + taskId
  const room = MAX_NAME_BYTES - Buffer.byteLength(suffix)
  while (Buffer.byteLength(name) > room) name = [...name].slice(0, -1).join('')
  return dir + name + suffix
}
