/**
 * parsePeerAd is the gate between the gossip topic and everything that trusts the view:
 * every field is checked, and only known fields get through.
 */
import { encode } from 'cborg'
import { describe, expect, it } from 'vitest'
import { decodePeerAd, encodePeerAd } from '../../src/protocol/advert.js'
import { parsePeerAd, type PeerAd } from '../../src/grid/index.js'
import { fakeDescription } from './harness.js'

const ID = '12D3KooWGRYZDHBembyGJQqQ6WgLqJWsGswkrU2e3YDAzrBZeJuL'

function goodAd (): PeerAd {
  const d = fakeDescription('node-a')
  d.resources.gpus = [{ index: 0, vendor: 'NVIDIA', model: 'A100-SXM4-40GB', memoryBytes: 40 * 2 ** 30, uuid: 'GPU-1234' }]
  d.offer = { cpus: 7.5, memBytes: 2 ** 34, gpus: [0], pools: ['gpu'], labels: { rack: 'r1' } }
  d.load = { cpusFree: 3.5, memFree: 2 ** 33, gpusFree: [0], running: 2, queued: 1, cpuUtil: 42.5 }
  return { v: 1, peer: ID, seq: 7, startedAt: 1_700_000_000_000, addrs: [`/ip4/10.0.0.2/tcp/7321/p2p/${ID}`], version: '0.1.0', ...d }
}

/** A copy of the good ad with one field replaced, addressed by a dotted path. */
function withField (path: string, value: unknown): unknown {
  const ad: any = structuredClone(goodAd())
  const keys = path.split('.')
  let o = ad
  for (const k of keys.slice(0, -1)) o = o[k]
  if (value === undefined) delete o[keys.at(-1)!]
  else o[keys.at(-1)!] = value
  return ad
}

describe('parsePeerAd', () => {
  it('accepts a good ad and round-trips it through CBOR', () => {
    expect(parsePeerAd(goodAd())).toEqual(goodAd())
    expect(decodePeerAd(encodePeerAd(goodAd()))).toEqual(goodAd())
    expect(parsePeerAd({ ...goodAd(), leaving: true }).leaving).toBe(true)
  })

  it('drops unknown fields', () => {
    const ad: any = parsePeerAd({ ...goodAd(), extra: 'x', resources: { ...goodAd().resources, secret: 1 } })
    expect(ad.extra).toBeUndefined()
    expect(ad.resources.secret).toBeUndefined()
  })

  it.each([
    ['not a map', 'x', []],
    ['version', 'v', 2],
    ['peer missing', 'peer', undefined],
    ['peer not an id', 'peer', 'QmNotAPeer'],
    ['peer too long', 'peer', 'x'.repeat(200)],
    ['negative seq', 'seq', -1],
    ['fractional seq', 'seq', 1.5],
    ['seq as string', 'seq', '1'],
    ['seq past 2^53', 'seq', 2 ** 60],
    ['startedAt', 'startedAt', null],
    ['addrs not a list', 'addrs', 'x'],
    ['too many addrs', 'addrs', Array.from({ length: 33 }, () => '/ip4/1.2.3.4/tcp/1')],
    ['addr too long', 'addrs', ['/'.repeat(600)]],
    ['version too long', 'version', 'v'.repeat(65)],
    ['host missing', 'resources.host', undefined],
    ['host too long', 'resources.host', 'h'.repeat(257)],
    ['os not a map', 'resources.os', 'linux'],
    ['negative cores', 'resources.cpu.cores', -1],
    ['absurd cores', 'resources.cpu.cores', 1e9],
    ['memory NaN', 'resources.memBytes', Number.NaN],
    ['memory Infinity', 'resources.memBytes', Number.POSITIVE_INFINITY],
    ['gpus not a list', 'resources.gpus', {}],
    ['too many gpus', 'resources.gpus', Array.from({ length: 65 }, (_, i) => ({ index: i, vendor: 'v', model: 'm', memoryBytes: 1 }))],
    ['gpu index', 'resources.gpus', [{ index: -1, vendor: 'v', model: 'm', memoryBytes: 1 }]],
    ['gpu uuid type', 'resources.gpus', [{ index: 0, vendor: 'v', model: 'm', memoryBytes: 1, uuid: 5 }]],
    ['offer cpus negative', 'offer.cpus', -0.5],
    ['offer gpu index', 'offer.gpus', [5000]],
    ['too many pools', 'offer.pools', Array.from({ length: 33 }, (_, i) => `p${i}`)],
    ['label value type', 'offer.labels', { a: 1 }],
    ['too many labels', 'offer.labels', Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))],
    ['cpuUtil over 100', 'load.cpuUtil', 101],
    ['running absurd', 'load.running', 1e12],
    ['gpusFree not a list', 'load.gpusFree', 0],
    ['leaving not a boolean', 'leaving', 'yes'],
    ['refresh interval negative', 'every', -1],
    ['refresh interval past an hour', 'every', 3_600_001],
    ['refresh interval not a number', 'every', '4000'],
    ['load missing', 'load', undefined]
  ])('refuses %s', (_name, path, value) => {
    const input = path === 'x' ? value : withField(path, value)
    expect(() => parsePeerAd(input)).toThrow(expect.objectContaining({ code: 'ERR_BAD_MESSAGE' }))
  })

  it('keeps the refresh interval a member states, and takes ads without one (older agents)', () => {
    expect(parsePeerAd({ ...goodAd(), every: 4000 }).every).toBe(4000)
    expect(parsePeerAd(goodAd()).every).toBeUndefined()
  })

  it('refuses oversized and undecodable bytes', () => {
    expect(() => decodePeerAd(new Uint8Array(64 * 1024 + 1))).toThrow(expect.objectContaining({ code: 'ERR_MESSAGE_TOO_LARGE' }))
    expect(() => decodePeerAd(Uint8Array.from([0xff, 0xff]))).toThrow(expect.objectContaining({ code: 'ERR_BAD_MESSAGE' }))
    expect(() => decodePeerAd(new Uint8Array(30_000).fill(0x81))).toThrow(expect.objectContaining({ code: 'ERR_BAD_MESSAGE' }))
    expect(() => decodePeerAd(encode({ ...goodAd(), extra: 1 }).subarray(0, 50))).toThrow(expect.objectContaining({ code: 'ERR_BAD_MESSAGE' }))
  })
})
