/**
 * vgrid fixes a few of its dependencies (`patches/`, applied by patch-package after install):
 * they bound memory and cost, or close a crash a member could cause. An install
 * can end up without them and nothing would notice: npm skipping install scripts, a tarball
 * installed as a dependency whose packages were hoisted where patch-package does not look.
 * So the agent checks, at start, that each patch is in the files it would actually load.
 *
 * Applied means: every line a patch adds is in the file, found the way Node finds the
 * package (node_modules of the package's directory, then of each directory above). The
 * patches themselves are the list, so a new patch is checked without touching this file.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { VgridError } from '../common/errors.js'

export interface PatchProblem {
  /** The patch file's name, e.g. `@libp2p+tcp+11.0.28.patch`. */
  patch: string
  /** What is wrong, in words. */
  why: string
}

export interface PatchCheck {
  /** Where the patch files are. */
  patchesDir: string
  /** The directory whose node_modules (and its parents') hold the packages. */
  from: string
}

interface FileChange { file: string, added: string[] }

/** `@scope+name+1.2.3.patch` → `@scope/name`, `1.2.3`. */
function packageOf (patch: string): { name: string, version: string } | undefined {
  const m = /^(.+)\+([^+]+)\.patch$/.exec(patch)
  if (m === null) return undefined
  return { name: m[1]!.replace('+', '/'), version: m[2]! }
}

/** The files a patch changes (paths under the package) and the lines it adds to each. */
function changes (text: string, pkg: string): FileChange[] {
  const out: FileChange[] = []
  const prefix = `a/node_modules/${pkg}/`
  for (const line of text.split('\n')) {
    if (line.startsWith('diff --git ')) {
      const a = line.split(' ')[2] ?? ''
      out.push({ file: a.startsWith(prefix) ? a.slice(prefix.length) : a, added: [] })
    } else if (line.startsWith('+') && !line.startsWith('+++') && out.length > 0) {
      const added = line.slice(1).trim()
      if (added !== '') out.at(-1)!.added.push(added)
    }
  }
  return out
}

/** The directory of package `name` as Node would find it from `from`. */
function findPackage (name: string, from: string): string | undefined {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name)
    if (existsSync(path.join(candidate, 'package.json'))) return candidate
    if (path.dirname(dir) === dir) return undefined
  }
}

/** The patches of `patchesDir` that the packages found from `from` lack; none when all are in. */
export function findUnappliedPatches ({ patchesDir, from }: PatchCheck): PatchProblem[] {
  let names: string[]
  try {
    names = readdirSync(patchesDir).filter((n) => n.endsWith('.patch')).sort()
  } catch {
    return [{ patch: patchesDir, why: 'the directory of patches is missing from this installation' }]
  }
  const problems: PatchProblem[] = []
  for (const patch of names) {
    const pkg = packageOf(patch)
    if (pkg === undefined) continue
    const dir = findPackage(pkg.name, from)
    if (dir === undefined) { problems.push({ patch, why: `${pkg.name} is not installed` }); continue }
    // Another version is no fault by itself: patch-package applies a patch that still fits
    // (with a warning), and then its lines are there. It explains a patch that is not.
    let version: unknown
    try { version = (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version?: unknown }).version } catch {}
    const other = version === pkg.version ? '' : ` (version ${String(version)} is installed, the patch is for ${pkg.version})`
    for (const change of changes(readFileSync(path.join(patchesDir, patch), 'utf8'), pkg.name)) {
      const file = path.join(dir, change.file)
      let text: string
      try { text = readFileSync(file, 'utf8') } catch { problems.push({ patch, why: `${file} is missing${other}` }); break }
      if (change.added.some((line) => !text.includes(line))) { problems.push({ patch, why: `${file} is not patched${other}` }); break }
    }
  }
  return problems
}

/** Refuses to go on (ERR_UNPATCHED) when a patch is not applied, saying which and how to fix it. */
export function assertPatchesApplied (check: PatchCheck): void {
  const problems = findUnappliedPatches(check)
  if (problems.length === 0) return
  const root = path.dirname(check.patchesDir)
  throw new VgridError('ERR_UNPATCHED',
    `a fix vgrid needs in its dependencies is not applied: ${problems.map((p) => `${p.patch} (${p.why})`).join('; ')}`,
    `apply them: \`cd ${root} && npx patch-package\` (or \`npm rebuild vgrid\` where vgrid was installed as a package), then start the agent again`)
}
