import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  computeOffer, DEFAULT_LISTEN, DEFAULT_PORT, parseLabel, resolveAgentConfig, validatePoolName, vgridHome,
  type AgentFlags, type ShareConfig
} from '../../src/agent/config.js'
import type { Resources } from '../../src/grid/types.js'
import { badArg } from '../helpers/bad-arg.js'

const G = 2 ** 30

let home: string
let env: NodeJS.ProcessEnv

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'vgrid-config-'))
  env = { VGRID_HOME: home, HOME: '/nonexistent' }
})
afterEach(() => { rmSync(home, { recursive: true, force: true }) })

function writeConfig (content: unknown): string {
  const path = join(home, 'config')
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content))
  return path
}

describe('vgridHome', () => {
  it('is $VGRID_HOME made absolute, else ~/.vgrid', () => {
    expect(vgridHome({ VGRID_HOME: '/srv/vgrid' })).toBe('/srv/vgrid')
    expect(vgridHome({ VGRID_HOME: 'rel/dir' })).toBe(join(process.cwd(), 'rel/dir'))
    expect(vgridHome({ HOME: '/home/ada' })).toBe('/home/ada/.vgrid')
    expect(vgridHome({ VGRID_HOME: '', HOME: '/home/ada' })).toBe('/home/ada/.vgrid')
  })
})

describe('resolveAgentConfig defaults', () => {
  it('shares everything and listens on the fixed IPv4 port', () => {
    const c = resolveAgentConfig({}, env)
    expect(c).toEqual({ home, peers: [], listen: [`/ip4/0.0.0.0/tcp/${DEFAULT_PORT}`], share: { pools: [], labels: {} }, policy: { nice: 10, onlyWhenIdle: false }, isolation: { mode: 'sandbox', net: true }, http: { host: '127.0.0.1', port: 7322, ifFree: true } })
    expect(DEFAULT_LISTEN).toEqual(['/ip4/0.0.0.0/tcp/7321'])
    expect(c.join).toBeUndefined()
  })
})

describe('how guests are contained', () => {
  it('takes --isolation, --guest-net, --guest-user and --guest-share from flags, the environment and the file', () => {
    expect(resolveAgentConfig({ isolation: 'none', guestNet: 'none', guestUser: 'vgrid-guest', guestShare: ['/data', '/scratch:rw'] }, env).isolation)
      .toEqual({ mode: 'none', net: false, guestUser: 'vgrid-guest', shares: [{ path: '/data', rw: false }, { path: '/scratch', rw: true }] })
    expect(resolveAgentConfig({}, { ...env, VGRID_ISOLATION: 'NONE', VGRID_GUEST_SHARE: '/a,/b:rw' }).isolation)
      .toEqual({ mode: 'none', net: true, shares: [{ path: '/a', rw: false }, { path: '/b', rw: true }] })
  })

  it.each<[AgentFlags, RegExp]>([
    [{ isolation: 'bwrap' }, /--isolation.*expected sandbox or none/],
    [{ guestNet: 'off' }, /--guest-net.*expected on or none/],
    [{ guestUser: 'a b' }, /--guest-user.*user name/],
    [{ guestShare: 'data' }, /--guest-share.*absolute directory/],
    [{ guestShare: '/proc/1' }, /--guest-share.*cannot be shared/],
    [{ guestShare: '/' }, /--guest-share.*cannot be shared/]
  ])('refuses %j', (flags, message) => {
    expect(badArg(() => resolveAgentConfig(flags, env)).message).toMatch(message)
  })
})

describe('flags', () => {
  it.each<[AgentFlags, Partial<ShareConfig>]>([
    [{ cpus: 4 }, { cpus: 4 }],
    [{ cpus: '4' }, { cpus: 4 }],
    [{ gpus: 'none' }, { gpus: 'none' }],
    [{ gpus: 'ALL' }, { gpus: 'all' }],
    [{ gpus: 0 }, { gpus: [0] }],
    [{ gpus: '1,0,1' }, { gpus: [0, 1] }],
    [{ gpus: '0, 3' }, { gpus: [0, 3] }],
    [{ mem: '16G' }, { memBytes: 16 * G }],
    [{ mem: '1.5T' }, { memBytes: 1.5 * 1024 * G }],
    [{ pool: 'lab' }, { pools: ['lab'] }],
    [{ pool: ['lab', 'gpu.box', 'lab'] }, { pools: ['lab', 'gpu.box'] }],
    [{ pool: 'a,b' }, { pools: ['a', 'b'] }],
    [{ label: 'rack=b2' }, { labels: { rack: 'b2' } }],
    [{ label: ['rack=b2', 'k8s.io/zone=eu-1', 'empty=', 'x=a=b,c'] }, { labels: { rack: 'b2', 'k8s.io/zone': 'eu-1', empty: '', x: 'a=b,c' } }]
  ])('%j', (flags, share) => {
    expect(resolveAgentConfig(flags, env).share).toMatchObject(share)
  })

  it('takes --join and --peer together, and --listen', () => {
    const c = resolveAgentConfig({
      join: ' TOKEN123 ',
      peer: ['/ip4/10.0.0.1/tcp/7321/p2p/12D3KooWabc', '/dns4/b.lab/tcp/7321'],
      listen: '/ip4/127.0.0.1/tcp/0,/ip6/::1/tcp/0'
    }, env)
    expect(c.join).toBe('TOKEN123')
    expect(c.peers).toEqual(['/ip4/10.0.0.1/tcp/7321/p2p/12D3KooWabc', '/dns4/b.lab/tcp/7321'])
    expect(c.listen).toEqual(['/ip4/127.0.0.1/tcp/0', '/ip6/::1/tcp/0'])
  })

  it.each<[AgentFlags, RegExp]>([
    [{ cpus: 1.5 }, /--cpus: 1.5 .*whole number of cores, such as 8 \(0: lend none\)/],
    [{ cpus: -2 }, /--cpus/],
    [{ cpus: 2.5 }, /--cpus: 2.5/],
    [{ cpus: 'many' }, /--cpus: "many"/],
    [{ cpus: '' }, /--cpus/],
    [{ cpus: 1e9 }, /--cpus/],
    [{ gpus: '' }, /--gpus.*none, all, or GPU indexes/],
    [{ gpus: 'some' }, /--gpus: "some"/],
    [{ gpus: '0,,1' }, /--gpus/],
    [{ gpus: '-1' }, /--gpus/],
    [{ gpus: '0-3' }, /--gpus/],
    [{ gpus: 1.5 }, /--gpus/],
    [{ gpus: '9999' }, /--gpus/],
    [{ mem: '16X' }, /--mem "16X".*512M, 16G/],
    [{ mem: '0' }, /--mem.*above zero/],
    [{ mem: '-1G' }, /--mem/],
    [{ pool: 'Lab' }, /--pool: "Lab".*pool name/],
    [{ pool: '-lab' }, /--pool/],
    [{ pool: 'a'.repeat(64) }, /--pool/],
    [{ pool: 'a b' }, /--pool/],
    [{ pool: 'gpu-2' }, /--pool: "gpu-2" is not valid: it is a resource shape \(-P gpu-2 asks for 2 GPUs\)/],
    [{ pool: 'gpu-a100' }, /--pool: "gpu-a100" is not valid: it is a resource shape \(-P gpu-a100 asks for 1 GPU whose model contains "a100"\); a pool may be named anything that is not exactly cpu-N, gpu-N, gpu-MODEL or gpu-MODEL-N/],
    [{ pool: 'lab,gpu-a100-8' }, /--pool: "gpu-a100-8".*8 GPUs whose model contains "a100"/],
    [{ pool: 'cpu-16' }, /--pool: "cpu-16".*16 cores/],
    [{ label: 'novalue' }, /--label: "novalue".*key=value/],
    [{ label: '=v' }, /--label.*label key/],
    [{ label: 'sp ace=v' }, /--label.*label key/],
    [{ label: `${'k'.repeat(64)}=v` }, /--label.*label key/],
    [{ label: `k=${'v'.repeat(257)}` }, /--label.*at most 256/],
    [{ label: 'k=a\nb' }, /--label.*newlines/],
    [{ listen: 'tcp/7321' }, /--listen: "tcp\/7321".*multiaddr/],
    [{ listen: `/${'x'.repeat(600)}` }, /--listen.*512/],
    [{ listen: '' }, /--listen/],
    [{ peer: '10.0.0.1:7321' }, /--peer: "10.0.0.1:7321".*multiaddr/],
    [{ peer: '/ip4/1.2.3.4/tcp/1 /ip4/5.6.7.8/tcp/1' }, /--peer/],
    [{ join: '' }, /--join.*join token/],
    [{ join: 'a b' }, /--join/]
  ])('refuses %j', (flags, message) => {
    expect(badArg(() => resolveAgentConfig(flags, env)).message).toMatch(message)
  })

  it('tells a pool with capitals to use lowercase', () => {
    expect(badArg(() => validatePoolName('Lab')).hint).toMatch(/lowercase/)
  })

  it('takes any pool name that is not exactly a shape, the README\'s cpu-boxes among them', () => {
    for (const name of ['cpu-boxes', 'cpu', 'gpu', 'gpus', 'gpus-a100', 'cpu-8-fast', 'a100-gpu', 'tpu-4']) expect(validatePoolName(name)).toBe(name)
    expect(resolveAgentConfig({ gpus: 'none', pool: 'cpu-boxes', label: 'room=b12' }, env).share).toMatchObject({ gpus: 'none', pools: ['cpu-boxes'], labels: { room: 'b12' } })
  })

  it('suggests a name that is not a shape', () => {
    expect(badArg(() => validatePoolName('gpu-a100')).hint).toBe('name the pool otherwise, e.g. gpus-a100')
    expect(validatePoolName('gpus-a100')).toBe('gpus-a100')
  })
})

describe('environment', () => {
  it('reads every VGRID_* setting', () => {
    const c = resolveAgentConfig({}, {
      ...env,
      VGRID_CPUS: '3',
      VGRID_GPUS: '1',
      VGRID_MEM: '8G',
      VGRID_POOL: 'lab,night',
      VGRID_LABELS: 'rack=b2,os=debian',
      VGRID_LISTEN: '/ip4/127.0.0.1/tcp/9000'
    })
    expect(c.share).toEqual({ cpus: 3, gpus: [1], memBytes: 8 * G, pools: ['lab', 'night'], labels: { rack: 'b2', os: 'debian' } })
    expect(c.listen).toEqual(['/ip4/127.0.0.1/tcp/9000'])
  })

  it('ignores empty variables', () => {
    expect(resolveAgentConfig({}, { ...env, VGRID_CPUS: '', VGRID_POOL: '' }).share).toEqual({ pools: [], labels: {} })
  })

  it('names the variable that is wrong', () => {
    expect(badArg(() => resolveAgentConfig({}, { ...env, VGRID_CPUS: 'x' })).message).toMatch(/^VGRID_CPUS: "x"/)
    expect(badArg(() => resolveAgentConfig({}, { ...env, VGRID_LABELS: 'a' })).message).toMatch(/^VGRID_LABELS: "a".*key=value/)
  })
})

describe('the join token, kept off the command line', () => {
  it('takes it from --join-file (whitespace and a final newline trimmed), else VGRID_JOIN_TOKEN', () => {
    const file = join(home, 'grid.token')
    writeFileSync(file, '  vgrid2.FROMFILE\n', { mode: 0o600 })
    expect(resolveAgentConfig({ joinFile: file }, env).join).toBe('vgrid2.FROMFILE')
    expect(resolveAgentConfig({}, { ...env, VGRID_JOIN_TOKEN: 'vgrid2.FROMENV' }).join).toBe('vgrid2.FROMENV')
    // a flag wins over the variable, as everywhere
    expect(resolveAgentConfig({ joinFile: file }, { ...env, VGRID_JOIN_TOKEN: 'vgrid2.FROMENV' }).join).toBe('vgrid2.FROMFILE')
    expect(resolveAgentConfig({}, { ...env, VGRID_JOIN_TOKEN: '' }).join).toBeUndefined()
  })

  it('refuses two sources, a missing or empty file, and never prints what it read', () => {
    const file = join(home, 'grid.token')
    writeFileSync(file, 'secret words here\n')
    expect(badArg(() => resolveAgentConfig({ join: 'vgrid2.A', joinFile: file }, env)).message).toMatch(/--join and --join-file both/)
    const bad = badArg(() => resolveAgentConfig({ joinFile: file }, env))
    expect(bad.message).toMatch(/^--join-file .*grid\.token: not a join token/)
    expect(bad.message).not.toContain('secret')
    expect(badArg(() => resolveAgentConfig({ joinFile: join(home, 'absent') }, env)).message).toMatch(/--join-file.*cannot read it \(ENOENT\)/)
    writeFileSync(file, '\n')
    expect(badArg(() => resolveAgentConfig({ joinFile: file }, env)).hint).toBe('it is empty')
    expect(badArg(() => resolveAgentConfig({}, { ...env, VGRID_JOIN_TOKEN: 'a b' })).message).toMatch(/^VGRID_JOIN_TOKEN: not a join token/)
    // `--join -` is the CLI's to read; the configuration never takes the dash for a token
    expect(badArg(() => resolveAgentConfig({ join: '-' }, env)).message).toMatch(/--join/)
  })
})

describe('config file', () => {
  it('reads every field', () => {
    writeConfig({ cpus: 6, gpus: [2, 0], mem: '32G', pools: ['lab'], labels: { rack: 'c1' }, listen: ['/ip4/0.0.0.0/tcp/7400'] })
    const c = resolveAgentConfig({}, env)
    expect(c.share).toEqual({ cpus: 6, gpus: [0, 2], memBytes: 32 * G, pools: ['lab'], labels: { rack: 'c1' } })
    expect(c.listen).toEqual(['/ip4/0.0.0.0/tcp/7400'])
  })

  it('takes mem in bytes and gpus as text, and null as unset', () => {
    writeConfig({ mem: 1024 ** 3, gpus: 'none', cpus: null })
    expect(resolveAgentConfig({}, env).share).toEqual({ gpus: 'none', memBytes: G, pools: [], labels: {} })
  })

  it('treats an empty file as no file', () => {
    writeConfig('  \n')
    expect(resolveAgentConfig({}, env).share).toEqual({ pools: [], labels: {} })
  })

  it('ranks flags over environment over file over defaults, setting by setting', () => {
    writeConfig({ cpus: 1, gpus: '0', mem: '1G', pools: ['file'], labels: { from: 'file' } })
    const e = { ...env, VGRID_CPUS: '2', VGRID_GPUS: '1', VGRID_POOL: 'env' }
    const c = resolveAgentConfig({ cpus: 3 }, e)
    expect(c.share).toEqual({ cpus: 3, gpus: [1], memBytes: G, pools: ['env'], labels: { from: 'file' } })
    expect(c.listen).toEqual(DEFAULT_LISTEN)
    // a list is replaced whole, not merged
    expect(resolveAgentConfig({ label: 'from=flag' }, e).share.labels).toEqual({ from: 'flag' })
  })

  it.each<[unknown, RegExp]>([
    ['{"cpus": 4,', /config is not valid JSON/],
    ['[1,2]', /config must hold a JSON object/],
    ['"8"', /config must hold a JSON object/],
    [{ cpu: 4 }, /config: unknown field "cpu" \(known: cpus, gpus, mem, cacheSize, keepResults, pools, labels, listen, maxTasks, nice, onlyWhenIdle, acceptFrom, paused, isolation, guestNet, guestUser, guestShare, http, httpCert, httpKey\)/],
    [{ cpus: 'eight' }, /config: field "cpus": "eight" is not valid/],
    [{ cpus: -1 }, /config: field "cpus"/],
    [{ paused: 'sometimes' }, /config: field "paused"/],
    [{ keepResults: '7 days' }, /config: field "keepResults"/],
    [{ keepResults: '10s' }, /config: field "keepResults"/],
    [{ gpus: [0, 'x'] }, /config: field "gpus"/],
    [{ gpus: true }, /config: field "gpus"/],
    [{ mem: '16 gigs' }, /config: field "mem"/],
    [{ mem: true }, /config: field "mem"/],
    [{ pools: [1] }, /config: field "pools"/],
    [{ pools: ['UPPER'] }, /config: field "pools"/],
    [{ labels: { rack: 5 } }, /config: field "labels".rack/],
    [{ labels: ['rack'] }, /config: field "labels"/],
    [{ listen: 'tcp/1' }, /config: field "listen"/]
  ])('refuses %j naming the file and the field', (content, message) => {
    const path = writeConfig(content)
    const err = badArg(() => resolveAgentConfig({}, env))
    expect(err.message).toContain(path)
    expect(err.message).toMatch(message)
  })

  it('reports a bad file even when a flag overrides the field', () => {
    writeConfig({ cpus: 'eight' })
    expect(() => resolveAgentConfig({ cpus: 2 }, env)).toThrow(/field "cpus"/)
  })

  it('says how to fix a malformed file', () => {
    const path = writeConfig('{')
    expect(badArg(() => resolveAgentConfig({}, env)).hint).toContain(`fix or remove ${path}`)
  })

  it('refuses a config that is a directory or too large', () => {
    mkdirSync(join(home, 'config'))
    expect(badArg(() => resolveAgentConfig({}, env)).message).toMatch(/cannot read .*config/)
    rmSync(join(home, 'config'), { recursive: true })
    writeConfig(JSON.stringify({ labels: { a: 'x'.repeat(70_000) } }))
    expect(badArg(() => resolveAgentConfig({}, env)).message).toMatch(/larger than/)
  })
})

describe('parseLabel', () => {
  it('splits at the first =', () => {
    expect(parseLabel('a=b=c')).toEqual(['a', 'b=c'])
  })
})

describe('computeOffer', () => {
  const machine: Resources = {
    host: 'h',
    os: { platform: 'linux', distro: 'Debian', release: '12', arch: 'x64' },
    cpu: { model: 'Xeon', cores: 8 },
    memBytes: 32 * G,
    gpus: [
      { index: 0, vendor: 'nvidia', model: 'A100', memoryBytes: 80 * G },
      { index: 1, vendor: 'nvidia', model: 'A100', memoryBytes: 80 * G }
    ]
  }
  const base = { pools: ['lab'], labels: { rack: 'b2' } }

  it('shares everything by default', () => {
    expect(computeOffer(base, machine)).toEqual({
      offer: { cpus: 8, memBytes: 32 * G, gpus: [0, 1], pools: ['lab'], labels: { rack: 'b2' } },
      warnings: []
    })
  })

  it('shares what the owner limits it to', () => {
    const { offer, warnings } = computeOffer({ ...base, cpus: 2, memBytes: 4 * G, gpus: [1] }, machine)
    expect(offer).toMatchObject({ cpus: 2, memBytes: 4 * G, gpus: [1] })
    expect(warnings).toEqual([])
    expect(computeOffer({ ...base, gpus: 'none' }, machine).offer.gpus).toEqual([])
    expect(computeOffer({ ...base, gpus: 'all' }, machine).offer.gpus).toEqual([0, 1])
  })

  it('clamps to what exists and says so', () => {
    const { offer, warnings } = computeOffer({ ...base, cpus: 64, memBytes: 64 * G, gpus: [1, 5] }, machine)
    expect(offer).toMatchObject({ cpus: 8, memBytes: 32 * G, gpus: [1] })
    expect(warnings).toHaveLength(3)
    expect(warnings[0]).toMatch(/--cpus 64 .* 8 cores/)
    expect(warnings[1]).toMatch(/--mem 64 GiB .* 32 GiB/)
    expect(warnings[2]).toMatch(/--gpus: no GPU with index 5 \(this machine has 0,1\)/)
  })

  it('warns about GPUs asked for on a machine without any', () => {
    const { offer, warnings } = computeOffer({ ...base, gpus: [0] }, { ...machine, gpus: [] })
    expect(offer.gpus).toEqual([])
    expect(warnings[0]).toMatch(/no GPUs/)
  })

  it('does not share its inputs', () => {
    const share = { ...base }
    const { offer } = computeOffer(share, machine)
    offer.pools.push('x')
    offer.labels.y = 'z'
    expect(share).toEqual(base)
  })
})

describe('--cache-size', () => {
  it('sizes the chunk store from the flag, VGRID_CACHE_SIZE or the config file', () => {
    const home = mkdtempSync(join(tmpdir(), 'vgrid-cfg-'))
    expect(resolveAgentConfig({ cacheSize: '2G' }, { VGRID_HOME: home }).cacheBytes).toBe(2 * 2 ** 30)
    expect(resolveAgentConfig({}, { VGRID_HOME: home, VGRID_CACHE_SIZE: '512M' }).cacheBytes).toBe(512 * 2 ** 20)
    writeFileSync(join(home, 'config'), JSON.stringify({ cacheSize: '1G' }))
    expect(resolveAgentConfig({}, { VGRID_HOME: home }).cacheBytes).toBe(2 ** 30)
    expect(resolveAgentConfig({ cacheSize: '3G' }, { VGRID_HOME: home }).cacheBytes).toBe(3 * 2 ** 30)
    expect(() => resolveAgentConfig({ cacheSize: 'lots' }, { VGRID_HOME: home })).toThrow(/--cache-size "lots" is not valid/)
    expect(resolveAgentConfig({}, { VGRID_HOME: mkdtempSync(join(tmpdir(), 'vgrid-cfg-')) }).cacheBytes).toBeUndefined()
  })
})

describe('--keep-results', () => {
  it('keeps an away owner\'s results for the flag\'s, VGRID_KEEP_RESULTS\' or the file\'s duration', () => {
    const home = mkdtempSync(join(tmpdir(), 'vgrid-cfg-'))
    expect(resolveAgentConfig({}, { VGRID_HOME: home }).keepResultsMs).toBeUndefined()
    expect(resolveAgentConfig({ keepResults: '12h' }, { VGRID_HOME: home }).keepResultsMs).toBe(12 * 3600_000)
    expect(resolveAgentConfig({}, { VGRID_HOME: home, VGRID_KEEP_RESULTS: '30m' }).keepResultsMs).toBe(30 * 60_000)
    writeFileSync(join(home, 'config'), JSON.stringify({ keepResults: '2d' }))
    expect(resolveAgentConfig({}, { VGRID_HOME: home }).keepResultsMs).toBe(2 * 86400_000)
    expect(() => resolveAgentConfig({ keepResults: 'forever' }, { VGRID_HOME: home })).toThrow(/--keep-results: "forever" is not valid.*7d/)
    expect(() => resolveAgentConfig({ keepResults: '30s' }, { VGRID_HOME: home })).toThrow(/--keep-results/)
  })
})
