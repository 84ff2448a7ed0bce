/**
 * The start-time check that vgrid's fixes to its dependencies are applied: against this
 * checkout's node_modules (patched by npm ci), and against unpatched copies made in a temporary
 * directory (the real node_modules is never touched).
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { assertPatchesApplied, findUnappliedPatches } from '../../src/agent/patches.js'
import { ROOT } from '../helpers/procs.js'

const PATCHES = path.join(ROOT, 'patches')
const patchNames = fs.readdirSync(PATCHES).filter((n) => n.endsWith('.patch'))
const packageName = (patch: string): string => patch.replace(/\+[^+]+\.patch$/, '').replace('+', '/')

const dirs: string[] = []
afterEach(() => { for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })

/** A root whose node_modules holds a copy of the package of `patch`, and a patches dir with that patch only. */
function copyOf (patch: string): { root: string, patchesDir: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-patches-'))
  dirs.push(root)
  const pkg = packageName(patch)
  fs.cpSync(path.join(ROOT, 'node_modules', pkg), path.join(root, 'node_modules', pkg), { recursive: true })
  const patchesDir = path.join(root, 'patches')
  fs.mkdirSync(patchesDir)
  fs.copyFileSync(path.join(PATCHES, patch), path.join(patchesDir, patch))
  return { root, patchesDir }
}

describe('the dependency patches check', () => {
  it('finds every patch applied in this checkout', () => {
    expect(patchNames.length).toBeGreaterThan(0)
    expect(findUnappliedPatches({ patchesDir: PATCHES, from: ROOT })).toEqual([])
    expect(() => { assertPatchesApplied({ patchesDir: PATCHES, from: ROOT }) }).not.toThrow()
    // found the way Node finds them: from a directory below, through the node_modules above
    expect(findUnappliedPatches({ patchesDir: PATCHES, from: path.join(ROOT, 'dist', 'src') })).toEqual([])
  })

  it.each(patchNames)('notices %s undone in a copy of its package', (patch) => {
    const { root, patchesDir } = copyOf(patch)
    expect(findUnappliedPatches({ patchesDir, from: root })).toEqual([])
    // undone as `patch-package --reverse` would: the patch's paths are relative to the root
    execFileSync('git', ['apply', '-R', path.join(patchesDir, patch)], { cwd: root })
    const problems = findUnappliedPatches({ patchesDir, from: root })
    expect(problems).toHaveLength(1)
    expect(problems[0]!.patch).toBe(patch)
    expect(problems[0]!.why).toMatch(/ is (not patched|missing)$/)
  })

  it('refuses with the patch named and how to apply it', () => {
    const patch = patchNames.find((n) => n.startsWith('@libp2p+tcp+'))!
    const { root, patchesDir } = copyOf(patch)
    execFileSync('git', ['apply', '-R', path.join(patchesDir, patch)], { cwd: root })
    let err: any
    try { assertPatchesApplied({ patchesDir, from: root }) } catch (e) { err = e }
    expect(err).toMatchObject({ code: 'ERR_UNPATCHED' })
    expect(err.message).toContain(`a fix vgrid needs in its dependencies is not applied: ${patch} (`)
    expect(err.hint).toContain(`cd ${root} && npx patch-package`)
    expect(err.hint).toContain('npm rebuild vgrid')
  })

  it('says so when the package is missing, of another version, or the patches are', () => {
    const patch = patchNames.find((n) => n.startsWith('@libp2p+tcp+'))!
    const { root, patchesDir } = copyOf(patch)
    const pj = path.join(root, 'node_modules', '@libp2p', 'tcp', 'package.json')
    fs.writeFileSync(pj, JSON.stringify({ ...JSON.parse(fs.readFileSync(pj, 'utf8')), version: '9.9.9' }))
    // another version that patch-package could patch all the same is fine
    expect(findUnappliedPatches({ patchesDir, from: root })).toEqual([])
    execFileSync('git', ['apply', '-R', path.join(patchesDir, patch)], { cwd: root })
    expect(findUnappliedPatches({ patchesDir, from: root })[0]!.why).toMatch(/ is not patched \(version 9\.9\.9 is installed, the patch is for 11\.0\.28\)$/)
    fs.rmSync(path.join(root, 'node_modules'), { recursive: true })
    expect(findUnappliedPatches({ patchesDir, from: root })).toEqual([{ patch, why: '@libp2p/tcp is not installed' }])
    expect(findUnappliedPatches({ patchesDir: path.join(root, 'none'), from: root })[0]!.why).toMatch(/patches is missing/)
  })
})
