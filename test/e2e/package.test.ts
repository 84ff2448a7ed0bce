/**
 * Installing vgrid as a lab installs a tool: from the tarball `npm pack` makes. The tarball is
 * unpacked as an installed package (node_modules/vgrid, its dependencies beside it, linked to
 * this checkout's, which npm ci patched): its agent starts and serves its dashboard, so the
 * tarball holds everything the binaries need; with one dependency's patch undone in a copy,
 * the agent refuses to start and says how to fix it. This checkout's node_modules is never
 * changed.
 */
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ROOT, collect, runCli, tempDir, waitFor } from '../helpers/procs.js'

const patches = fs.readdirSync(path.join(ROOT, 'patches')).filter((n) => n.endsWith('.patch'))
let tarball: string
let files: string[]

beforeAll(() => {
  const dest = tempDir('vgrid-pack-')
  // --ignore-scripts: `prepare` would build again; the suite runs on a built dist/
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dest], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  const [info] = JSON.parse(out) as Array<{ filename: string, files: Array<{ path: string }> }>
  tarball = path.join(dest, info!.filename)
  files = info!.files.map((f) => f.path)
}, 120_000)

/** An app directory with vgrid installed from the tarball, its dependencies linked to ours. */
function install (): { app: string, bin: string } {
  const app = tempDir('vgrid-app-')
  const modules = path.join(app, 'node_modules')
  fs.mkdirSync(modules)
  execFileSync('tar', ['xzf', tarball, '-C', modules])
  fs.renameSync(path.join(modules, 'package'), path.join(modules, 'vgrid'))
  for (const name of fs.readdirSync(path.join(ROOT, 'node_modules'))) {
    if (name.startsWith('.')) continue
    const from = path.join(ROOT, 'node_modules', name)
    if (name.startsWith('@')) {
      fs.mkdirSync(path.join(modules, name))
      for (const sub of fs.readdirSync(from)) fs.symlinkSync(path.join(from, sub), path.join(modules, name, sub))
    } else {
      fs.symlinkSync(from, path.join(modules, name))
    }
  }
  return { app, bin: path.join(modules, 'vgrid', 'bin', 'vgrid.js') }
}

const running: Array<ReturnType<typeof spawn>> = []
afterEach(() => { for (const p of running.splice(0)) p.kill('SIGKILL') })

function agent (bin: string, home: string): { proc: ReturnType<typeof spawn>, done: ReturnType<typeof collect> } {
  const proc = spawn(process.execPath, [bin, 'agent', '--listen', '/ip4/127.0.0.1/tcp/0', '--http', '127.0.0.1:0'], {
    cwd: tempDir('vgrid-cwd-'), env: { ...process.env, VGRID_HOME: home }, stdio: ['ignore', 'pipe', 'pipe']
  })
  running.push(proc)
  return { proc, done: collect(proc, 90_000) }
}

describe('the packed tarball', () => {
  it('holds the binaries, the built code, the dashboard and every patch', () => {
    for (const f of ['package.json', 'README.md', 'bin/vgrid.js', 'bin/vrun.js', 'bin/vbatch.js', 'bin/bundled.js', 'bin/package.json', 'dist/src/cli/vgrid.js', 'dist/src/cli/vrun.bundle.cjs', 'dist/src/cli/vbatch.bundle.cjs', 'dist/src/agent/main.js', 'dist/src/agent/patches.js', 'ui/index.html']) {
      expect(files, f).toContain(f)
    }
    for (const p of patches) expect(files).toContain(`patches/${p}`)
    for (const f of fs.readdirSync(path.join(ROOT, 'ui'))) expect(files).toContain(`ui/${f}`)
    // nothing of the tests, the sources or the tools
    expect(files.filter((f) => /^(test|src|scripts|bench)\//.test(f) || f.startsWith('dist/test/'))).toEqual([])
  })

  it('runs an agent, dashboard included, once installed', async () => {
    const { bin } = install()
    const home = tempDir()
    const { done } = agent(bin, home)
    try {
      const status = await waitFor(async () => {
        const r = await runCli('vgrid', ['status', '--json'], { home, timeoutMs: 10_000 })
        return r.code === 0 ? JSON.parse(r.stdout).status : undefined
      }, 'the installed agent to start', 60_000, 200)
      expect(status.joinToken).toMatch(/^vgrid2\./)
      const page = await fetch(`${status.http as string}/`)
      expect(page.status).toBe(200)
      expect(await page.text()).toContain('<html')
      // The installed vrun and vbatch start from their one-file bundles (npm pack gives every
      // file one mtime, so the bundle is as new as the modules), and run: without a module
      // the unbundled start needs, they still do.
      fs.rmSync(path.join(path.dirname(bin), '..', 'dist', 'src', 'cli', 'vrun-args.js'))
      const vrun = execFileSync(process.execPath, [path.join(path.dirname(bin), 'vrun.js'), '--no-sync', 'echo', 'installed'], { env: { ...process.env, VGRID_HOME: home }, encoding: 'utf8' })
      expect(vrun).toBe('installed\n')
      const id = execFileSync(process.execPath, [path.join(path.dirname(bin), 'vbatch.js'), '--no-sync', 'true'], { env: { ...process.env, VGRID_HOME: home }, encoding: 'utf8' })
      expect(id).toMatch(/^[0-9a-f]{16}\n$/)
    } finally {
      await runCli('vgrid', ['agent', 'stop'], { home })
    }
    const r = await done
    // the join line names the installed binary
    expect(r.stdout).toContain(`| ${bin} agent --join -`)
  }, 120_000)

  it('refuses to start an agent whose dependency is not patched, saying which patch and how', async () => {
    const { app, bin } = install()
    const patch = patches.find((n) => n.startsWith('@libp2p+tcp+'))!
    const tcp = path.join(app, 'node_modules', '@libp2p', 'tcp')
    fs.rmSync(tcp)
    fs.cpSync(fs.realpathSync(path.join(ROOT, 'node_modules', '@libp2p', 'tcp')), tcp, { recursive: true })
    execFileSync('git', ['apply', '-R', path.join(ROOT, 'patches', patch)], { cwd: app })
    const home = tempDir()
    const r = await agent(bin, home).done
    expect(r.code, r.stderr).not.toBe(0)
    expect(r.stderr).toContain(`a fix vgrid needs in its dependencies is not applied: ${patch} (${tcp}/`)
    expect(r.stderr).toContain(`cd ${path.join(app, 'node_modules', 'vgrid')} && npx patch-package`)
    expect(fs.existsSync(path.join(home, 'agent.sock'))).toBe(false)
  }, 60_000)
})
