import { describe, expect, it } from 'vitest'
import { renderUnit, unitWord } from '../../src/cli/service-unit.js'

describe('the systemd unit', () => {
  it('quotes and escapes what systemd would read otherwise: blanks, quotes, specifiers, variables', () => {
    expect(unitWord('/usr/bin/node')).toBe('/usr/bin/node')
    expect(unitWord('/opt/my vgrid/bin/vgrid.js')).toBe('"/opt/my vgrid/bin/vgrid.js"')
    expect(unitWord('/data/100%/vgrid')).toBe('/data/100%%/vgrid')
    expect(unitWord('/home/$USER/x')).toBe('/home/$$USER/x')
    expect(unitWord('VGRID_HOME=/home/$x', false)).toBe('VGRID_HOME=/home/$x')
    expect(unitWord('a"b\\c')).toBe('"a\\"b\\\\c"')
  })

  it('names the token file, never a token, and only a system unit a guest user', () => {
    const spec = { node: '/usr/bin/node', bin: '/opt/vgrid/bin/vgrid.js', home: '/home/ada/.vgrid', joinFile: '/home/ada/.vgrid/join-token' }
    const user = renderUnit({ ...spec, system: false })
    expect(user).toContain('\nExecStart=/usr/bin/node --max-semi-space-size=4 /opt/vgrid/bin/vgrid.js agent --join-file /home/ada/.vgrid/join-token\n')
    expect(user).not.toContain('--guest-user')
    expect(user).not.toContain('network-online')
    const system = renderUnit({ ...spec, system: true, home: '/var/lib/vgrid', joinFile: '/var/lib/vgrid/join-token', guestUser: 'vgridguest' })
    expect(system).toContain(' agent --join-file /var/lib/vgrid/join-token --guest-user vgridguest\n')
    expect(system).toContain('\nStateDirectory=vgrid\nStateDirectoryMode=0700\n')
    expect(renderUnit({ ...spec, system: false, joinFile: undefined } as never)).toContain('vgrid.js agent\n')
  })
})
