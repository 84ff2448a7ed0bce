/**
 * `vgrid service install|uninstall` through the real binary, with the unit directory
 * redirected (VGRID_SYSTEMD_DIR): systemd is never told, nothing of this machine changes.
 * The unit is checked by `systemd-analyze verify` where it is installed, and always by
 * structure (its lines, the paths it names, that the token is not in it).
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { BIN, runCli, tempDir } from '../helpers/procs.js'
import { createSwarmKey, encodeJoinToken } from '../../src/grid/index.js'

const ID = '12D3KooWGRYZDHBembyGJQqQ6WgLqJWsGswkrU2e3YDAzrBZeJuL'
const TOKEN = encodeJoinToken({ swarmKey: createSwarmKey(), addrs: [`/ip4/127.0.0.1/tcp/7321/p2p/${ID}`] })
const HAS_ANALYZE = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0

/** `systemd-analyze verify` where present: no error and no warning about the unit; else reports that it was not run. */
function verify (unitFile: string): string {
  if (!HAS_ANALYZE) return 'systemd-analyze is not installed here: structural checks only'
  // as a system unit: verifying a user unit needs a running user manager; the syntax is the same
  const r = spawnSync('systemd-analyze', ['verify', unitFile], { encoding: 'utf8' })
  // a container without what systemd-analyze itself needs says so before reading any unit
  if (r.status !== 0 && /Failed to (initialize manager|lookup RuntimeDirectory)/.test(r.stderr)) {
    return `systemd-analyze cannot run here (${r.stderr.trim().split('\n')[0]!}): structural checks only`
  }
  expect(r.status, r.stderr).toBe(0)
  expect(r.stderr.split('\n').filter((l) => l.includes(path.basename(unitFile)) || l.includes(unitFile))).toEqual([])
  return 'systemd-analyze verify passed'
}

/** The unit's lines as `Key=value`, by section. */
function parseUnit (text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  let section = ''
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue
    const m = /^\[(\w+)\]$/.exec(line)
    if (m !== null) { section = m[1]!; out[section] = []; continue }
    out[section]!.push(line)
  }
  return out
}

describe('vgrid service', () => {
  it('writes a user unit that starts the agent by absolute paths, joins through a 0600 file, restarts on failure', async () => {
    const home = tempDir()
    const units = tempDir('vgrid-units-')
    const tokenFile = path.join(tempDir('vgrid-token-'), 'grid.token')
    fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
    const r = await runCli('vgrid', ['service', 'install', '--join-file', tokenFile], { home, env: { VGRID_SYSTEMD_DIR: units } })
    expect(r.code, r.stderr).toBe(0)
    const unitFile = path.join(units, 'vgrid.service')
    const text = fs.readFileSync(unitFile, 'utf8')
    const kept = path.join(home, 'join-token')
    const unit = parseUnit(text)
    expect(unit.Service).toContain(`ExecStart=${process.execPath} --max-semi-space-size=4 ${BIN.vgrid} agent --join-file ${kept}`)
    expect(unit.Service).toContain(`Environment=VGRID_HOME=${home}`)
    expect(unit.Service).toContain('Restart=on-failure')
    expect(unit.Install).toEqual(['WantedBy=default.target'])
    expect(text).not.toContain(TOKEN)
    expect(fs.readFileSync(kept, 'utf8').trim()).toBe(TOKEN)
    expect(fs.statSync(kept).mode & 0o777).toBe(0o600)
    // systemd was not told: the commands to run are printed instead
    expect(r.stdout).toContain(`wrote ${unitFile}`)
    expect(r.stdout).toContain('systemctl --user enable --now vgrid.service')
    console.log(verify(unitFile))

    // --print shows the same unit and writes nothing
    const printHome = tempDir()
    const printed = await runCli('vgrid', ['service', 'install', '--print'], { home: printHome, env: { VGRID_SYSTEMD_DIR: path.join(units, 'none'), VGRID_JOIN_TOKEN: TOKEN } })
    expect(printed.code, printed.stderr).toBe(0)
    expect(printed.stdout).toBe(text.replaceAll(home, printHome))
    expect(fs.existsSync(path.join(units, 'none'))).toBe(false)
    expect(fs.readdirSync(printHome)).toEqual([])

    const removed = await runCli('vgrid', ['service', 'uninstall'], { home, env: { VGRID_SYSTEMD_DIR: units } })
    expect(removed.code, removed.stderr).toBe(0)
    expect(fs.existsSync(unitFile)).toBe(false)
    expect(fs.existsSync(kept)).toBe(false)
    expect(removed.stdout).toContain('systemctl --user disable --now vgrid.service')
  }, 60_000)

  it('writes a system unit that starts at boot, the agent as root and its guests as an unprivileged user', async () => {
    const home = tempDir()
    const units = tempDir('vgrid-units-')
    const r = await runCli('vgrid', ['service', 'install', '--system', '--join', '-'], { home, input: `${TOKEN}\n`, env: { VGRID_SYSTEMD_DIR: units } })
    expect(r.code, r.stderr).toBe(0)
    const unitFile = path.join(units, 'vgrid.service')
    const unit = parseUnit(fs.readFileSync(unitFile, 'utf8'))
    expect(unit.Service).toContain(`ExecStart=${process.execPath} --max-semi-space-size=4 ${BIN.vgrid} agent --join-file ${path.join(home, 'join-token')} --guest-user nobody`)
    // no User=: the agent runs as root, and drops its guests to --guest-user
    expect(unit.Service!.filter((l) => l.startsWith('User='))).toEqual([])
    expect(unit.Service).toContain('Restart=on-failure')
    expect(unit.Unit).toContain('After=network-online.target')
    expect(unit.Install).toEqual(['WantedBy=multi-user.target'])
    expect(r.stdout).toContain('  systemctl enable --now vgrid.service')
    console.log(verify(unitFile))
  }, 60_000)

  it('refuses a token with a typo before writing anything, and options that do not apply', async () => {
    const home = tempDir()
    const units = tempDir('vgrid-units-')
    const typo = TOKEN.slice(0, 20) + (TOKEN[20] === 'a' ? 'b' : 'a') + TOKEN.slice(21)
    const r = await runCli('vgrid', ['service', 'install'], { home, env: { VGRID_SYSTEMD_DIR: units, VGRID_JOIN_TOKEN: typo } })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('checksum does not match')
    expect(fs.readdirSync(units)).toEqual([])
    expect(fs.readdirSync(home)).toEqual([])
    const user = await runCli('vgrid', ['service', 'install', '--guest-user', 'nobody'], { home, env: { VGRID_SYSTEMD_DIR: units } })
    expect(user.code).toBe(2)
    expect(user.stderr).toContain('--guest-user applies to a system unit')
  }, 60_000)
})
