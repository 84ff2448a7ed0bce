import { encode } from 'cborg'
import { describe, expect, it } from 'vitest'
import { createSwarmKey, decodeJoinToken, encodeJoinToken, tokenAddrs } from '../../src/grid/index.js'

const ID = '12D3KooWGRYZDHBembyGJQqQ6WgLqJWsGswkrU2e3YDAzrBZeJuL'
const ADDR = `/ip4/192.168.1.20/tcp/7321/p2p/${ID}`
const key = createSwarmKey()
const rawKey = Buffer.from(new TextDecoder().decode(key).split('\n')[2], 'hex')
const token = (v: unknown): string => 'vgrid1.' + Buffer.from(encode(v)).toString('base64url')

describe('join token', () => {
  it('round-trips the swarm key and addresses in one copy-pasteable word', () => {
    const t = encodeJoinToken({ swarmKey: key, addrs: [ADDR, `/ip4/127.0.0.1/tcp/7321/p2p/${ID}`] })
    expect(t).toMatch(/^vgrid2\.[A-Za-z0-9_-]+$/)
    expect(t.length).toBeLessThan(300)
    const info = decodeJoinToken(t)
    expect(info.swarmKey).toEqual(key)
    expect(info.addrs).toEqual([ADDR, `/ip4/127.0.0.1/tcp/7321/p2p/${ID}`])
    expect(info.legacy).toBeUndefined()
    // surrounding whitespace from a copy and paste is fine
    expect(decodeJoinToken(`  ${t}\n`).swarmKey).toEqual(key)
  })

  it('refuses every one-character typo and every swap of two neighbours, checksum included', () => {
    const t = encodeJoinToken({ swarmKey: key, addrs: [ADDR] })
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const refused = (bad: string): boolean => {
      try {
        decodeJoinToken(bad)
        return false
      } catch (err) {
        return (err as { code?: string }).code === 'ERR_BAD_TOKEN'
      }
    }
    let tried = 0
    for (let i = 'vgrid2.'.length; i < t.length; i++) {
      // a few replacements per position keep the test fast; CRC-32 catches all of them alike
      for (const c of [alphabet[(alphabet.indexOf(t[i]!) + 1) % 64]!, alphabet[(alphabet.indexOf(t[i]!) + 37) % 64]!]) {
        const bad = t.slice(0, i) + c + t.slice(i + 1)
        expect(refused(bad), `${c} at ${i}`).toBe(true)
        tried++
      }
      if (i + 1 < t.length && t[i] !== t[i + 1]) {
        expect(refused(t.slice(0, i) + t[i + 1]! + t[i]! + t.slice(i + 2)), `swap at ${i}`).toBe(true)
      }
      // a character lost, or one too many
      expect(refused(t.slice(0, i) + t.slice(i + 1)), `lost at ${i}`).toBe(true)
    }
    expect(tried).toBeGreaterThan(100)
    expect(() => decodeJoinToken(t.slice(0, -1) + (t.endsWith('A') ? 'B' : 'A'))).toThrow(/checksum does not match/)
  })

  it('accepts a token of the form before the checksum (vgrid1.), flagged as such', () => {
    const info = decodeJoinToken(token({ k: rawKey, a: [ADDR] }))
    expect(info.swarmKey).toEqual(key)
    expect(info.addrs).toEqual([ADDR])
    expect(info.legacy).toBe(true)
  })

  it.each([
    ['empty', ''],
    ['bad prefix', 'vgrid9.' + token({ k: rawKey, a: [ADDR] }).slice(7)],
    ['no checksum', 'vgrid2.' + token({ k: rawKey, a: [ADDR] }).slice(7)],
    ['checksum only', encodeJoinToken({ swarmKey: key, addrs: [ADDR] }).replace(/\.[A-Za-z0-9_-]+([A-Za-z0-9_-]{6})$/, '.$1')],
    ['no prefix', token({ k: rawKey, a: [ADDR] }).slice(7)],
    ['bad base64', 'vgrid1.abc$def'],
    ['cut short', token({ k: rawKey, a: [ADDR] }).slice(0, 40)],
    ['not CBOR', 'vgrid1.' + Buffer.from('hello world').toString('base64url')],
    ['not a map', token([rawKey, [ADDR]])],
    ['short key', token({ k: rawKey.subarray(0, 31), a: [ADDR] })],
    ['key as a string', token({ k: rawKey.toString('hex'), a: [ADDR] })],
    ['no addrs', token({ k: rawKey, a: [] })],
    ['addrs missing', token({ k: rawKey })],
    ['unparsable multiaddr', token({ k: rawKey, a: ['/ip4/999.1.1.1/tcp/1/p2p/' + ID] })],
    ['addr without peer id', token({ k: rawKey, a: ['/ip4/10.0.0.1/tcp/7321'] })],
    ['addr not a string', token({ k: rawKey, a: [42] })],
    ['too many addrs', token({ k: rawKey, a: Array.from({ length: 17 }, (_, i) => `/ip4/10.0.0.${i}/tcp/1/p2p/${ID}`) })],
    ['over 4 KiB', 'vgrid1.' + 'A'.repeat(4100)],
    ['duplicate keys', 'vgrid1.' + Buffer.from([0xa2, 0x61, 0x6b, 0x01, 0x61, 0x6b, 0x02]).toString('base64url')]
  ])('refuses a malformed token: %s', (_name, t) => {
    let err: any
    try {
      decodeJoinToken(t)
    } catch (e) {
      err = e
    }
    expect(err).toMatchObject({ code: 'ERR_BAD_TOKEN' })
    expect(err.message).toMatch(/^the join token is not valid: /)
    expect(err.hint).toBeTruthy()
  })

  it('cannot be made without a usable address', () => {
    expect(() => encodeJoinToken({ swarmKey: key, addrs: [] })).toThrow(expect.objectContaining({ code: 'ERR_BAD_ARGUMENT' }))
    expect(() => encodeJoinToken({ swarmKey: key, addrs: ['/ip4/10.0.0.1/tcp/1'] })).toThrow(expect.objectContaining({ code: 'ERR_BAD_ARGUMENT' }))
  })
})

describe('tokenAddrs', () => {
  const a = (ip: string, proto = 'ip4'): string => `/${proto}/${ip}/tcp/7321/p2p/${ID}`

  it('puts LAN addresses in, leaves loopback and link-local out', () => {
    expect(tokenAddrs([a('127.0.0.1'), a('192.168.1.20'), a('169.254.3.4'), a('::1', 'ip6'), a('fe80::1', 'ip6'), a('10.1.2.3')]))
      .toEqual([a('192.168.1.20'), a('10.1.2.3')])
  })

  it('falls back to loopback when there is nothing else (a grid on one machine)', () => {
    expect(tokenAddrs([a('127.0.0.1'), a('169.254.3.4')])).toEqual([a('127.0.0.1')])
  })

  it('keeps at most eight and skips what does not parse', () => {
    const many = Array.from({ length: 12 }, (_, i) => a(`10.0.0.${i + 1}`))
    expect(tokenAddrs(['garbage', ...many])).toEqual(many.slice(0, 8))
  })
})
