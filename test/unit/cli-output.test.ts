import { describe, it, expect } from 'vitest'
import { VgridError } from '../../src/common/errors.js'
import { vgridCommand } from '../../src/common/join-line.js'
import type { AgentStatus, GpuInfo, GpuUse, PeerView } from '../../src/grid/types.js'
import {
  EXIT_GRID_FAILURE, EXIT_USAGE, exitCodeFor, formatError, formatGpus, formatSeen, formatUsageError,
  joinLine, peersJson, renderPeersTable, renderStatus, statusJson
} from '../../src/cli/output.js'
import { UsageError } from '../../src/cli/usage-error.js'

const GiB = 2 ** 30

function gpu (index: number, model = 'NVIDIA A100-SXM4-80GB'): GpuInfo {
  return { index, vendor: 'NVIDIA', model, memoryBytes: 80 * GiB }
}

function peer (over: { id: string, host: string, gpus?: GpuInfo[], lent?: number[], free?: number[], self?: boolean, lastSeenMs?: number, running?: number, queued?: number, use?: GpuUse[] }): PeerView {
  const gpus = over.gpus ?? []
  return {
    v: 1,
    peer: over.id,
    seq: 1,
    startedAt: 0,
    addrs: [],
    version: '0.1.0',
    resources: { host: over.host, os: { platform: 'linux', distro: 'x', release: '1', arch: 'x64' }, cpu: { model: 'cpu', cores: 64 }, memBytes: 256 * GiB, gpus },
    offer: { cpus: 32, memBytes: 128 * GiB, gpus: over.lent ?? gpus.map((g) => g.index), pools: [], labels: {} },
    load: { cpusFree: 30, memFree: 100 * GiB, gpusFree: over.free ?? [], running: over.running ?? 0, queued: over.queued ?? 0, cpuUtil: 5, ...(over.use !== undefined ? { gpuUse: over.use } : {}) },
    lastSeenMs: over.lastSeenMs ?? 0,
    self: over.self ?? false
  }
}

const ID_A = '12D3KooWAAAAaaaaBBBBbbbbCCCCccccDDDDddddEEEEAa1111'
const ID_B = '12D3KooWBBBBaaaaBBBBbbbbCCCCccccDDDDddddEEEEBb2222'
const ID_C = '12D3KooWCCCCaaaaBBBBbbbbCCCCccccDDDDddddEEEEXxSn62Xk'

describe('vgrid peers table', () => {
  const peers = [
    peer({
      id: ID_C, host: 'dgx-1', gpus: [0, 1, 2, 3, 4, 5, 6, 7].map((i) => gpu(i)), lent: [0, 1, 2, 3, 4, 5, 6], free: [0, 1, 2], lastSeenMs: 3_400, running: 5, queued: 2,
      // GPUs 3 and 4 run one task, 5 another; 6 is held by a member too old to say by whom.
      use: [{ index: 3, task: '3f2a9c1e5b7d0a11', who: 'alice@ws-2' }, { index: 4, task: '3f2a9c1e5b7d0a11', who: 'alice@ws-2' }, { index: 5, task: '77aa00bb11cc22dd', who: 'bob@laptop' }]
    }),
    peer({ id: ID_B, host: 'ws-2', gpus: [gpu(0, 'NVIDIA GeForce RTX 4090')], free: [0], lastSeenMs: 500, running: 1 }),
    peer({ id: ID_A, host: 'laptop', self: true })
  ]

  it('renders 0, 1 and 8 GPUs, this agent first and marked', () => {
    expect(renderPeersTable(peers)).toBe([
      'PEER      HOST    STATE  LOAD  CPUS   MEM              GPUS                         TASKS          POOLS  LABELS  SEEN',
      '…Aa1111*  laptop  lends  5%    30/32  100 GiB/128 GiB  -                            0              -      -       now',
      '…Sn62Xk   dgx-1   lends  5%    30/32  100 GiB/128 GiB  7×A100-SXM4-80GB (3 free)    5 (+2 queued)  -      -       3s ago',
      '…Bb2222   ws-2    lends  5%    30/32  100 GiB/128 GiB  1×GeForce RTX 4090 (1 free)  1              -      -       now',
      '3 members; * = this agent',
      '',
      'GPU        MODEL             MEMORY  TASK              FOR',
      'dgx-1 [0]  A100-SXM4-80GB    80 GiB  free',
      'dgx-1 [1]  A100-SXM4-80GB    80 GiB  free',
      'dgx-1 [2]  A100-SXM4-80GB    80 GiB  free',
      'dgx-1 [3]  A100-SXM4-80GB    80 GiB  3f2a9c1e5b7d0a11  alice@ws-2',
      'dgx-1 [4]  A100-SXM4-80GB    80 GiB  3f2a9c1e5b7d0a11  alice@ws-2',
      'dgx-1 [5]  A100-SXM4-80GB    80 GiB  77aa00bb11cc22dd  bob@laptop',
      'dgx-1 [6]  A100-SXM4-80GB    80 GiB  busy',
      'ws-2 [0]   GeForce RTX 4090  80 GiB  free',
      ''
    ].join('\n'))
  })

  it('shows advertised names without their control characters', () => {
    const evil = peer({ id: ID_B, host: 'ws\u001b[2J', gpus: [gpu(0)], free: [], use: [{ index: 0, task: '0123456789abcdef', who: 'eve@x\u009b31m' }] })
    const out = renderPeersTable([evil])
    expect(out).toContain('ws?[2J')
    expect(out).toContain('eve@x?31m')
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/)
  })

  it('aligns columns', () => {
    const lines = renderPeersTable(peers).split('\n').slice(0, 4)
    const col = (l: string): number => l.indexOf('30/32')
    expect(lines[0]!.indexOf('CPUS')).toBe(col(lines[1]!))
    expect(col(lines[1]!)).toBe(col(lines[2]!))
    for (const l of lines) expect(l).not.toMatch(/\s$/)
  })

  it('groups lent GPUs by model and counts the free ones', () => {
    const mixed = peer({ id: ID_B, host: 'x', gpus: [gpu(0), gpu(1, 'NVIDIA H100'), gpu(2), gpu(3)], lent: [0, 1, 2], free: [1, 2] })
    expect(formatGpus(mixed)).toBe('2×A100-SXM4-80GB (1 free), 1×H100 (1 free)')
    expect(formatGpus(peer({ id: ID_B, host: 'x', gpus: [gpu(0)], lent: [] }))).toBe('-')
  })

  it('says how long ago a member was heard from', () => {
    expect(formatSeen(0)).toBe('now')
    expect(formatSeen(1_999)).toBe('now')
    expect(formatSeen(3_000)).toBe('3s ago')
    expect(formatSeen(125_000)).toBe('2m ago')
    expect(formatSeen(7_300_000)).toBe('2h ago')
  })

  it('says which members are paused or draining, under the table', () => {
    const paused = peer({ id: ID_B, host: 'ws-b', running: 2 })
    paused.load.paused = true
    const draining = peer({ id: ID_C, host: 'ws-c', running: 1 })
    draining.load.draining = true
    const text = renderPeersTable([peer({ id: ID_A, host: 'ws-a', self: true }), paused, draining])
    expect(text).toContain('3 members; * = this agent\nws-b is paused by its owner: it takes no new command (2 running go on)\n' +
      'ws-c is draining: it takes no new command and stops once its 1 running command has ended\n')
  })

  it('shows state, load, pools and labels, and tells apart members that share a host name or the end of an id', () => {
    const twin = '12D3KooWTwinaaaaBBBBbbbbCCCCccccDDDDddddEEEEyySn62Xk'
    const one = peer({ id: ID_C, host: 'vm', gpus: [gpu(0)], free: [0] })
    const two = peer({ id: twin, host: 'vm', gpus: [gpu(0)], free: [] })
    one.offer.pools = ['gpu-a100', 'night']
    one.offer.labels = { rack: 'b2' }
    two.load.ownerBusy = true
    two.load.cpuUtil = 87.4
    const text = renderPeersTable([peer({ id: ID_A, host: 'ws-a', self: true }), one, two])
    expect(text).toContain('…xSn62Xk  vm    lends       5%    30/32  100 GiB/128 GiB  1×A100-SXM4-80GB (1 free)  0      gpu-a100,night  rack=b2')
    expect(text).toContain('…ySn62Xk  vm    owner-busy  87%')
    expect(text).toContain('vm (…ySn62Xk) lends only when its owner is idle (--only-when-idle), and its owner is busy: it takes no new command\n')
    expect(text).toContain('vm (…xSn62Xk) [0]  A100-SXM4-80GB  80 GiB  free\n')
    expect(text).toContain('vm (…ySn62Xk) [0]  A100-SXM4-80GB  80 GiB  busy\n')
  })

  it('--json is {"peers": [...]} exactly as received', () => {
    expect(JSON.parse(peersJson(peers))).toEqual({ peers })
    expect(peersJson(peers).endsWith('}\n')).toBe(true)
  })
})

describe('vgrid status', () => {
  const status: AgentStatus = {
    peer: ID_A,
    host: 'laptop',
    version: '0.1.0',
    home: '/home/u/.vgrid',
    addrs: [`/ip4/192.168.1.5/tcp/7321/p2p/${ID_A}`, `/ip4/127.0.0.1/tcp/7321/p2p/${ID_A}`],
    gridSize: 3,
    connections: 2,
    startedAt: Date.UTC(2025, 0, 1, 12, 0, 0),
    joinToken: 'vgrid1TOKEN'
  }

  it('shows the agent, one address a line, and the line to paste elsewhere', () => {
    const text = renderStatus(status, Date.UTC(2025, 0, 1, 15, 4, 0))
    expect(text).toBe([
      `peer id      ${ID_A}`,
      'host         laptop',
      'version      0.1.0',
      'home         /home/u/.vgrid',
      `addresses    /ip4/192.168.1.5/tcp/7321/p2p/${ID_A}`,
      `             /ip4/127.0.0.1/tcp/7321/p2p/${ID_A}`,
      'grid size    3 members',
      'connections  2',
      'started      2025-01-01T12:00:00.000Z (3h 4m ago)',
      '',
      'To add another machine to this grid, run there:',
      // under vitest this process is not a vgrid binary: npx, never allowed to fetch a package
      '  echo vgrid1TOKEN | npx --no-install vgrid agent --join -',
      ''
    ].join('\n'))
  })

  it('names the binary that runs, by its absolute path, in the join line', () => {
    expect(joinLine('vgrid2.abc', vgridCommand('/opt/vgrid/bin/vgrid.js'))).toBe('echo vgrid2.abc | /opt/vgrid/bin/vgrid.js agent --join -')
    expect(vgridCommand('/usr/local/bin/vgrid')).toBe('/usr/local/bin/vgrid')
    expect(vgridCommand('/home/a b/vgrid/bin/vgrid.js')).toBe("'/home/a b/vgrid/bin/vgrid.js'")
    expect(vgridCommand('bin/vgrid.js')).toBe('npx --no-install vgrid')
    expect(vgridCommand('/usr/lib/node_modules/vitest/vitest.mjs')).toBe('npx --no-install vgrid')
  })

  it('shows whether it lends, and what runs there, when the agent says', () => {
    const text = renderStatus({ ...status, lending: 'draining', running: { guests: 2, others: 1 } }, Date.UTC(2025, 0, 1, 15, 4, 0))
    expect(text).toContain('\nlending      draining: no new command; the agent stops once nothing runs here\nrunning      2 guest commands, 1 other\n')
    expect(renderStatus({ ...status, lending: 'paused', running: { guests: 0, others: 0 } })).toMatch(/\nlending +paused: no new command \(vgrid agent set --resume lends again\)\nrunning +0 guest commands\n/)
  })

  it('--json is {"status": {...}} exactly as received', () => {
    expect(JSON.parse(statusJson(status))).toEqual({ status })
  })
})

describe('errors and exit codes', () => {
  it('prints message and hint, stably', () => {
    const err = new VgridError('ERR_NO_AGENT', 'no vgrid agent is running (looked for /h/agent.sock)', 'start one with `vgrid agent`')
    expect(formatError('vrun', err)).toBe('vrun: no vgrid agent is running (looked for /h/agent.sock)\nhint: start one with `vgrid agent`\n')
    expect(formatError('vgrid', new VgridError('ERR_NO_CAPACITY'))).toBe('vgrid: no member has the requested resources free\n')
  })

  it('marks an error that is not ours as internal', () => {
    expect(formatError('vgrid', new TypeError('x is undefined'), {})).toMatch(/^vgrid: internal error: x is undefined\nhint: run again with DEBUG=vgrid:\* /)
  })

  it('follows a usage error with the usage line or the help', () => {
    const withLine = new UsageError('unknown option --x', undefined, { usage: 'usage: vgrid peers [options]' })
    expect(formatUsageError('vgrid', withLine, 'HELP', 'fallback')).toBe('vgrid: unknown option --x\nusage: vgrid peers [options]\n')
    expect(formatUsageError('vrun', new UsageError('bad'), 'HELP', 'usage: vrun …')).toBe('vrun: bad\nusage: vrun …\n')
    expect(formatUsageError('vrun', new UsageError('no command given', undefined, { showHelp: true }), 'HELP\n', '-')).toBe('vrun: no command given\n\nHELP\n')
  })

  it.each([
    [new UsageError('x'), EXIT_USAGE],
    [new VgridError('ERR_NO_AGENT'), EXIT_GRID_FAILURE],
    [new VgridError('ERR_PEER_LOST'), EXIT_GRID_FAILURE],
    [new VgridError('ERR_BAD_ARGUMENT'), EXIT_GRID_FAILURE],
    [new Error('bug'), EXIT_GRID_FAILURE]
  ] as const)('%o → %i', (err, code) => {
    expect(exitCodeFor(err)).toBe(code)
  })

  it('uses 2 for usage and 255 for grid and agent failures', () => {
    expect([EXIT_USAGE, EXIT_GRID_FAILURE]).toEqual([2, 255])
  })
})
