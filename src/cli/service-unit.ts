/**
 * The systemd unit `vgrid service install` writes: pure text from the paths it is given, so
 * tests check it without touching the system. A user unit (default) runs the agent as its
 * user while that user's manager runs (at boot with `loginctl enable-linger`); a system unit
 * runs it as root from boot, its guests dropped to an unprivileged user (DESIGN §5).
 */

export const UNIT_NAME = 'vgrid.service'
/** Where systemd reads units: the user's own, and the machine's. */
export const USER_UNIT_DIR = '.config/systemd/user'
export const SYSTEM_UNIT_DIR = '/etc/systemd/system'
/** A system agent's home: systemd makes it (StateDirectory), 0700, owned by root. */
export const SYSTEM_HOME = '/var/lib/vgrid'
/** The file, in the agent's home, that holds the join token for the unit (0600). */
export const SERVICE_TOKEN_FILE = 'join-token'
/** Between a failure and the next start: a crash loop must not spin. */
const RESTART_SEC = 5
/** The agent stops its guests within its own deadline (SHUTDOWN_DEADLINE_MS); this bounds a hang. */
const TIMEOUT_STOP_SEC = 30

export interface UnitSpec {
  system: boolean
  /** Absolute: the node binary, and the package's bin/vgrid.js. */
  node: string
  bin: string
  home: string
  /** The file with the join token, when the agent joins a grid at each start. */
  joinFile?: string
  /** Under root (a system unit), whom guests run as. */
  guestUser?: string
}

/**
 * One word of ExecStart= (`dollars`: where systemd expands $VAR) or Environment= as systemd
 * reads it back: `%` (specifiers) and `$` escaped, quoted when it holds a blank or a quote.
 */
export function unitWord (s: string, dollars = true): string {
  let escaped = s.replace(/%/g, '%%')
  if (dollars) escaped = escaped.replace(/\$/g, '$$$$')
  return /^[A-Za-z0-9_@%+=:,./$-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

export function renderUnit (spec: UnitSpec): string {
  // the bin's shebang carries the agent's V8 flags; ExecStart names node itself, so say them here
  const args = [spec.node, '--max-semi-space-size=4', spec.bin, 'agent',
    ...(spec.joinFile !== undefined ? ['--join-file', spec.joinFile] : []),
    ...(spec.system ? ['--guest-user', spec.guestUser ?? 'nobody'] : [])]
  const lines = [
    '# Written by `vgrid service install`; `vgrid service uninstall` removes it.',
    '[Unit]',
    'Description=vgrid agent: lends this machine to its compute grid',
    // a user manager has no network-online.target to wait for
    ...(spec.system ? ['Wants=network-online.target', 'After=network-online.target'] : []),
    '',
    '[Service]',
    'Type=simple',
    `Environment=${unitWord(`VGRID_HOME=${spec.home}`, false)}`,
    ...(spec.system && spec.home === SYSTEM_HOME ? ['StateDirectory=vgrid', 'StateDirectoryMode=0700'] : []),
    `ExecStart=${args.map((a) => unitWord(a)).join(' ')}`,
    // `systemctl reload vgrid`: the agent reads its owner policy again on SIGHUP
    'ExecReload=/bin/kill -HUP $MAINPID',
    'Restart=on-failure',
    `RestartSec=${RESTART_SEC}`,
    `TimeoutStopSec=${TIMEOUT_STOP_SEC}`,
    '',
    '[Install]',
    `WantedBy=${spec.system ? 'multi-user.target' : 'default.target'}`,
    ''
  ]
  return lines.join('\n')
}
