/**
 * Which paths of a workspace are not synced: `.vgridignore` files at any level, in gitignore
 * syntax, each file's patterns relative to its own directory, as git reads `.gitignore`:
 * a deeper file overrides a shallower one, the last matching line of a file wins, `!` re-includes,
 * a trailing `/` matches directories only, and nothing inside an excluded directory is looked
 * at (so nothing inside it can be re-included).
 */
import { lstatSync, readFileSync } from 'node:fs'
import path from 'node:path'
import ignore, { type Ignore } from 'ignore'

export const IGNORE_FILE = '.vgridignore'

/**
 * Built-in patterns, applied as if they opened the top `.vgridignore` (so a user can undo one
 * with `!.git/` there).
 *
 * - `.git`: the repository's history is often bigger than the work tree, changes on every
 *   commit, and a task needs the files, not the history. Without the slash it also matches
 *   the `.git` file of a submodule or linked work tree, which points at a directory that is
 *   not synced.
 *
 * Deliberately not here:
 * - `node_modules/`, `.venv/`, `target/`, build outputs: tasks often need them (running the
 *   tests of a project that was installed locally), and content-defined chunks make an
 *   unchanged copy cost one stat per file. A user who reinstalls on the executor lists them.
 * - conflict copies (`NAME.vgrid-conflict-<task>`) written when outputs come back: they are
 *   the user's files until the user resolves them, and a task should see what the user sees.
 */
export const DEFAULT_IGNORES: readonly string[] = ['.git']

interface Level {
  /** The directory of the ignore file, relative to the root, '' or ending in '/'. */
  prefix: string
  ig: Ignore
}

/** The rules that apply inside one directory of the walk; immutable, cheap to extend. */
export class IgnoreRules {
  private constructor (private readonly levels: readonly Level[], private readonly defaults: readonly string[]) {}

  /** Rules for the root of a walk: the defaults and, when given, the top `.vgridignore`. */
  static root (topFile?: string, defaults: readonly string[] = DEFAULT_IGNORES): IgnoreRules {
    const ig = makeIgnore().add(defaults as string[])
    if (topFile !== undefined) ig.add(topFile)
    return new IgnoreRules([{ prefix: '', ig }], defaults)
  }

  /**
   * The rules for the directory `dirRel` ('/'-separated, relative to the root), given the
   * content of the `.vgridignore` found in it. Call on the rules of its parent.
   */
  withFile (dirRel: string, content: string): IgnoreRules {
    if (dirRel === '') {
      // The top file joins the defaults so that it can negate them.
      const ig = makeIgnore().add(this.defaults as string[]).add(content)
      return new IgnoreRules([{ prefix: '', ig }, ...this.levels.slice(1)], this.defaults)
    }
    return new IgnoreRules([...this.levels, { prefix: dirRel + '/', ig: makeIgnore().add(content) }], this.defaults)
  }

  /**
   * Whether `relPath` ('/'-separated, relative to the root) is excluded. Its parent
   * directories must already have been found not excluded (the walk does not enter excluded
   * directories); a symlink to a directory is not a directory here, as in git.
   */
  ignores (relPath: string, isDir: boolean): boolean {
    for (let i = this.levels.length - 1; i >= 0; i--) {
      const { prefix, ig } = this.levels[i]!
      if (!relPath.startsWith(prefix)) continue
      const p = relPath.slice(prefix.length) + (isDir ? '/' : '')
      const r = matchOwn(ig, p)
      if (r.ignored) return true
      if (r.unignored) return false
    }
    return false
  }
}

function makeIgnore (): Ignore {
  // Linux file names are case-sensitive, and git's core.ignoreCase is false there.
  return ignore({ ignoreCase: false })
}

interface RuleSet { test (path: string, mode: string): { ignored: boolean, unignored: boolean } }

/**
 * The rules of one file applied to `p` itself. `Ignore.test` also reports a path as excluded
 * when one of its parents is; with several files that is wrong in one case git handles: an
 * outer file excludes `a/b/`, an inner one re-includes it, and `a/b/c` must then follow only
 * the rules that name it. The walk already settles the parents, so we ask the rule list
 * directly (`ignore`'s own single-path test), and fall back to the public call should a later
 * version of the package move it; test/unit/fs-sync-ignore.test.ts pins the behaviour.
 */
function matchOwn (ig: Ignore, p: string): { ignored: boolean, unignored: boolean } {
  const rules = (ig as unknown as { _rules?: Partial<RuleSet> })._rules
  if (typeof rules?.test === 'function') return (rules as RuleSet).test(p, 'regex')
  return ig.test(p)
}

/**
 * The rules of a workspace on disk, for testing paths outside a walk (outputs coming back):
 * each directory's `.vgridignore` is read the first time a path below it is tested, and a
 * path is excluded when it, or any directory above it, is.
 */
export class WorkspaceIgnore {
  private readonly dirs = new Map<string, IgnoreRules | null>()

  constructor (private readonly root: string, private readonly defaults: readonly string[] = DEFAULT_IGNORES) {}

  ignores (relPath: string, isDir: boolean): boolean {
    const parts = relPath.split('/')
    let rules = this.rulesOf('', undefined)!
    let dir = ''
    let real = true
    for (let i = 0; i < parts.length - 1; i++) {
      dir = dir === '' ? parts[i]! : `${dir}/${parts[i]!}`
      if (rules.ignores(dir, true)) return true
      // Below a component that is not a real directory (a symlink...), no ignore file is
      // read: it could lie outside the workspace.
      const own = real ? this.rulesOf(dir, rules) : undefined
      if (own === undefined) real = false
      else rules = own
    }
    return rules.ignores(relPath, isDir)
  }

  private rulesOf (dir: string, parent: IgnoreRules | undefined): IgnoreRules | undefined {
    const known = this.dirs.get(dir)
    if (known !== undefined) return known ?? undefined
    let rules: IgnoreRules | null = null
    const abs = path.join(this.root, dir)
    try {
      if (lstatSync(abs).isDirectory()) {
        rules = parent ?? IgnoreRules.root(undefined, this.defaults)
        const file = path.join(abs, IGNORE_FILE)
        if (lstatSync(file, { throwIfNoEntry: false })?.isFile() === true) rules = rules.withFile(dir, readFileSync(file, 'utf8'))
      }
    } catch {
      // Unreadable: no rules of its own.
    }
    if (dir === '' && rules === null) rules = IgnoreRules.root(undefined, this.defaults)
    this.dirs.set(dir, rules)
    return rules ?? undefined
  }
}

/** The ignore rules of the workspace at `root`, read lazily (see WorkspaceIgnore). */
export async function loadIgnoreRules (root: string, defaults?: readonly string[]): Promise<WorkspaceIgnore> {
  return new WorkspaceIgnore(root, defaults)
}
