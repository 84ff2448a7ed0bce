import { describe, it, expect } from 'vitest'
import { hostPath, type Sandbox } from '../../src/exec/sandbox.js'

/** A guest's view as guest-run.ts builds it; only the paths matter to hostPath. */
const sb: Sandbox = {
  bwrap: '/usr/bin/bwrap',
  workspace: { host: '/var/vgrid/ws/1', guest: '/tmp/vgrid-ws-abc' },
  cwd: '/tmp/vgrid-ws-abc',
  taskHome: { host: '/var/vgrid/tasks/1', guest: '/home/vgrid' },
  commands: { host: '/var/vgrid/bin', guest: '/home/vgrid/bin' },
  tmp: '/var/vgrid/tmp/1',
  system: ['/usr', '/etc'],
  links: [{ path: '/bin', target: 'usr/bin' }],
  readOnly: ['/tmp/ci/vgrid'],
  shares: [{ path: '/tmp/share', rw: false }, { path: '/data', rw: true }],
  hidden: ['/tmp/share/agent-home'],
  net: true,
  devices: [],
  cores: [],
  tools: { env: '/usr/bin/env' }
}

describe('hostPath: where a guest path is on this machine', () => {
  it('finds what is bound over the private /tmp at its own path: shares and read-only directories', () => {
    // a command on the guest's PATH in a share under /tmp (as tests share one) is found
    expect(hostPath(sb, '/tmp/share/python')).toBe('/tmp/share/python')
    expect(hostPath(sb, '/tmp/ci/vgrid/bin/vgrid.js')).toBe('/tmp/ci/vgrid/bin/vgrid.js')
    expect(hostPath(sb, '/tmp/other')).toBe('/var/vgrid/tmp/1/other')
    expect(hostPath(sb, '/tmp/vgrid-ws-abc/run.sh')).toBe('/var/vgrid/ws/1/run.sh')
  })

  it('keeps hidden what is hidden under a share, and what the guest cannot see', () => {
    expect(hostPath(sb, '/tmp/share/agent-home/key')).toBeUndefined()
    expect(hostPath(sb, '/root/.pyenv/shims/python')).toBeUndefined()
    expect(hostPath(sb, '/data/x')).toBe('/data/x')
    expect(hostPath(sb, '/bin/sh')).toBe('/usr/bin/sh')
    expect(hostPath(sb, '/home/vgrid/bin/vrun')).toBe('/var/vgrid/bin/vrun')
  })
})
