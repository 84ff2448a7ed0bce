/**
 * Choosing and checking multiaddrs: which of our addresses go into a join token, and which
 * addresses from a peer we are willing to dial.
 */
import { multiaddr, CODE_P2P, type Multiaddr } from '@multiformats/multiaddr'
import { MAX_AD_ADDRS, MAX_ADDR_CHARS, TOKEN_ADDRS } from './constants.js'

/** Parses a multiaddr, or undefined when it is not one. */
export function parseMultiaddr (s: unknown): Multiaddr | undefined {
  if (typeof s !== 'string' || s.length === 0 || s.length > MAX_ADDR_CHARS) return undefined
  try {
    return multiaddr(s)
  } catch {
    return undefined
  }
}

/** The peer id an address ends with (`…/p2p/<id>`), if any. */
export function addrPeerId (ma: Multiaddr): string | undefined {
  const last = ma.getComponents().at(-1)
  return last?.code === CODE_P2P ? last.value : undefined
}

/** The IP address (ip4 or ip6) of a TCP multiaddr, if it is one. */
export function tcpHost (ma: Multiaddr): string | undefined {
  const parts = ma.getComponents()
  const ip = parts.find((c) => c.name === 'ip4' || c.name === 'ip6')
  return ip?.value !== undefined && parts.some((c) => c.name === 'tcp') ? ip.value : undefined
}

type Scope = 'loopback' | 'link-local' | 'other'

function ipScope (ma: Multiaddr): Scope {
  const ip = ma.getComponents().find((c) => c.name === 'ip4' || c.name === 'ip6')
  if (ip?.value === undefined) return 'other'
  const v = ip.value.toLowerCase()
  if (ip.name === 'ip4') {
    if (v.startsWith('127.')) return 'loopback'
    if (v.startsWith('169.254.')) return 'link-local'
    return 'other'
  }
  if (v === '::1') return 'loopback'
  if (/^fe[89ab]/.test(v)) return 'link-local'
  return 'other'
}

/**
 * The listen addresses worth putting in a join token: LAN and public ones first; loopback
 * only when there is nothing else (a grid on one machine, as in the tests); never link-local
 * ones, which need an interface name to be dialled. At most TOKEN_ADDRS.
 */
export function tokenAddrs (addrs: string[]): string[] {
  const parsed = addrs.map((a) => ({ a, ma: parseMultiaddr(a) }))
    .filter((x): x is { a: string, ma: Multiaddr } => x.ma !== undefined)
  const other = parsed.filter((x) => ipScope(x.ma) === 'other').map((x) => x.a)
  const loopback = parsed.filter((x) => ipScope(x.ma) === 'loopback').map((x) => x.a)
  return (other.length > 0 ? other : loopback).slice(0, TOKEN_ADDRS)
}

/**
 * The addresses that go into our advertisement: LAN and public ones first, loopback last
 * (members on this same machine use them; others try them last), no link-local ones.
 */
export function advertAddrs (addrs: string[]): string[] {
  const parsed = addrs.map((a) => ({ a, scope: ((ma) => ma === undefined ? undefined : ipScope(ma))(parseMultiaddr(a)) }))
  return [
    ...parsed.filter((x) => x.scope === 'other'),
    ...parsed.filter((x) => x.scope === 'loopback')
  ].map((x) => x.a).slice(0, MAX_AD_ADDRS)
}

/**
 * The addresses of `peer` we may dial: those that parse and end in /p2p/<peer>, at most
 * `max`. Anything else a peer tells us is ignored, so an advertisement cannot make us dial
 * some third party.
 */
export function dialableAddrs (addrs: readonly string[], peer: string, max: number): Multiaddr[] {
  const out: Multiaddr[] = []
  for (const a of addrs) {
    if (out.length >= max) break
    const ma = parseMultiaddr(a)
    if (ma !== undefined && addrPeerId(ma) === peer) out.push(ma)
  }
  return out
}
