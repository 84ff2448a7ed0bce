/**
 * `vgrid service install|uninstall [--system] [--print]`: runs the agent as a systemd service
 * that starts with the machine (a system unit) or with the user's manager (a user unit), and
 * restarts it when it fails. The join token goes into a 0600 file in the agent's home that
 * the unit names with --join-file: never on a command line. systemctl is run only where it
 * works and the unit went where systemd reads units; otherwise the commands are printed.
 * VGRID_SYSTEMD_DIR puts the unit elsewhere (tests). Loaded only when that command runs.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { vgridHome } from '../agent/config.js'
import { VgridError } from '../common/errors.js'
import { PACKAGE_ROOT } from '../common/version.js'
import {
  renderUnit, SERVICE_TOKEN_FILE, SYSTEM_HOME, SYSTEM_UNIT_DIR, UNIT_NAME, USER_UNIT_DIR, type UnitSpec
} from './service-unit.js'

export interface ServiceInvocation {
  kind: 'service'
  action: 'install' | 'uninstall'
  system: boolean
  /** Print the unit (install) or what would be removed (uninstall); change nothing. */
  print: boolean
  /** The token, as read from --join-file, stdin or VGRID_JOIN_TOKEN; checked by the caller (vgrid.ts, as a usage error). */
  join?: string
  guestUser?: string
}

interface Io { env: NodeJS.ProcessEnv, stdout: NodeJS.WritableStream }

interface Where { unitDir: string, unitFile: string, home: string, redirected: boolean }

function where (system: boolean, env: NodeJS.ProcessEnv): Where {
  const redirect = env.VGRID_SYSTEMD_DIR
  const redirected = redirect !== undefined && redirect !== ''
  const userHome = env.HOME !== undefined && path.isAbsolute(env.HOME) ? env.HOME : os.homedir()
  const unitDir = redirected ? path.resolve(redirect) : system ? SYSTEM_UNIT_DIR : path.join(userHome, USER_UNIT_DIR)
  // a system agent keeps its own home, not root's ~/.vgrid (sudo may keep VGRID_HOME: then that)
  const home = system && (env.VGRID_HOME === undefined || env.VGRID_HOME === '') ? SYSTEM_HOME : vgridHome(env)
  return { unitDir, unitFile: path.join(unitDir, UNIT_NAME), home, redirected }
}

/** systemctl, for a user unit with --user; whether it ran and succeeded. */
function systemctl (system: boolean, args: string[]): boolean {
  const r = spawnSync('systemctl', [...(system ? [] : ['--user']), ...args], { stdio: 'ignore', timeout: 30_000 })
  return r.status === 0
}

/** Whether a systemd manager answers here (PID 1 for a system unit, the user's for a user unit). */
function systemdAnswers (system: boolean): boolean {
  return systemctl(system, ['show', '--property=Version'])
}

const command = (system: boolean, args: string): string => `systemctl${system ? '' : ' --user'} ${args}`

export async function runService (inv: ServiceInvocation, io: Io): Promise<number> {
  const w = where(inv.system, io.env)
  if (inv.system && !w.redirected && !inv.print && process.getuid?.() !== 0) {
    throw new VgridError('ERR_NOT_ALLOWED', `a system unit is written to ${SYSTEM_UNIT_DIR} and runs the agent as root`,
      'run it with sudo (`sudo $(command -v vgrid) service install --system`), or leave out --system for a unit of your own user')
  }
  return inv.action === 'install' ? install(inv, w, io) : uninstall(inv, w, io)
}

function install (inv: ServiceInvocation, w: Where, io: Io): number {
  const tokenFile = path.join(w.home, SERVICE_TOKEN_FILE)
  const spec: UnitSpec = {
    system: inv.system,
    node: process.execPath,
    bin: path.join(PACKAGE_ROOT, 'bin', 'vgrid.js'),
    home: w.home,
    ...(inv.join !== undefined ? { joinFile: tokenFile } : {}),
    ...(inv.guestUser !== undefined ? { guestUser: inv.guestUser } : {})
  }
  const unit = renderUnit(spec)
  if (inv.print) {
    io.stdout.write(unit)
    return 0
  }
  if (inv.join !== undefined) {
    fs.mkdirSync(w.home, { recursive: true, mode: 0o700 })
    const tmp = `${tokenFile}.tmp`
    fs.writeFileSync(tmp, `${inv.join}\n`, { mode: 0o600 })
    fs.renameSync(tmp, tokenFile)
  }
  fs.mkdirSync(w.unitDir, { recursive: true })
  fs.writeFileSync(w.unitFile, unit, { mode: 0o644 })
  const out: string[] = [`wrote ${w.unitFile}`]
  if (inv.join !== undefined) out.push(`wrote the join token to ${tokenFile} (readable by its owner only)`)
  const steps = [['daemon-reload'], ['enable', '--now', UNIT_NAME]]
  if (!w.redirected && systemdAnswers(inv.system) && steps.every((s) => systemctl(inv.system, s))) {
    out.push(`enabled and started: it starts ${inv.system ? 'at boot' : 'with your user\'s systemd'} and restarts when it fails`,
      `  ${command(inv.system, `status ${UNIT_NAME}`)}    journalctl ${inv.system ? '' : '--user '}-u vgrid -f`)
  } else {
    out.push(`systemd was not told${w.redirected ? ' (VGRID_SYSTEMD_DIR is set)' : ' (no systemd answers here)'}; to enable and start it, run:`, ...steps.map((s) => `  ${command(inv.system, s.join(' '))}`))
  }
  if (!inv.system) out.push(`to start it at boot, before you log in: loginctl enable-linger ${os.userInfo().username}`)
  io.stdout.write(out.join('\n') + '\n')
  return 0
}

function uninstall (inv: ServiceInvocation, w: Where, io: Io): number {
  const tokenFile = path.join(w.home, SERVICE_TOKEN_FILE)
  const present = fs.existsSync(w.unitFile)
  if (inv.print) {
    io.stdout.write([present ? `would remove ${w.unitFile}` : `no unit at ${w.unitFile}`, ...(fs.existsSync(tokenFile) ? [`would remove ${tokenFile}`] : [])].join('\n') + '\n')
    return 0
  }
  const out: string[] = []
  const talk = !w.redirected && systemdAnswers(inv.system)
  if (talk) systemctl(inv.system, ['disable', '--now', UNIT_NAME])
  if (present) { fs.rmSync(w.unitFile); out.push(`removed ${w.unitFile}`) } else out.push(`no unit at ${w.unitFile}`)
  if (fs.existsSync(tokenFile)) { fs.rmSync(tokenFile); out.push(`removed ${tokenFile}`) }
  if (talk) {
    systemctl(inv.system, ['daemon-reload'])
    out.push('stopped and disabled')
  } else if (present) {
    out.push(`systemd was not told${w.redirected ? ' (VGRID_SYSTEMD_DIR is set)' : ' (no systemd answers here)'}; if the service ran, run:`,
      `  ${command(inv.system, `disable --now ${UNIT_NAME}`)}`, `  ${command(inv.system, 'daemon-reload')}`)
  }
  out.push(`the agent's home (${w.home}) is kept: its identity and grid key, its tasks`)
  io.stdout.write(out.join('\n') + '\n')
  return 0
}
