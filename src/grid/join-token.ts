/**
 * Join tokens: one copy-pasteable word that carries the grid's swarm key and addresses of a
 * member, so `vgrid agent --join TOKEN` is all another machine needs. The form is
 * `vgrid1.` + base64url(CBOR { k: 32 key bytes, a: [multiaddr …/p2p/<id>, …] }).
 * Whoever holds a token can join the grid: it is a secret.
 */
import { encode, decode } from 'cborg'
import { VgridError } from '../common/errors.js'
import { addrPeerId, parseMultiaddr } from './addrs.js'
import { JOIN_TOKEN_PREFIX, MAX_TOKEN_ADDRS, MAX_TOKEN_CHARS } from './constants.js'
import { SWARM_KEY_RAW_BYTES, parseSwarmKey, swarmKeyFromRaw } from './swarm-key.js'

export interface JoinInfo {
  /** The swarm key in file form (95 bytes), ready for @libp2p/pnet. */
  swarmKey: Uint8Array
  /** Multiaddrs of members, each ending in /p2p/<id>. */
  addrs: string[]
}

const HINT = 'copy the whole token again from `vgrid status` (or the agent\'s output) on a member of the grid'

function badToken (why: string): never {
  throw new VgridError('ERR_BAD_TOKEN', `the join token is not valid: ${why}`, HINT)
}

export function encodeJoinToken (info: JoinInfo): string {
  const k = parseSwarmKey(info.swarmKey)
  if (k === undefined) throw new VgridError('ERR_BAD_ARGUMENT', 'not a valid swarm key')
  if (info.addrs.length === 0) throw new VgridError('ERR_BAD_ARGUMENT', 'a join token needs at least one address', 'is the agent listening on any address?')
  checkAddrs(info.addrs, (why) => { throw new VgridError('ERR_BAD_ARGUMENT', `cannot make a join token: ${why}`) })
  const token = JOIN_TOKEN_PREFIX + Buffer.from(encode({ k, a: info.addrs.slice(0, MAX_TOKEN_ADDRS) })).toString('base64url')
  if (token.length > MAX_TOKEN_CHARS) throw new VgridError('ERR_BAD_ARGUMENT', 'the addresses do not fit in a join token', 'listen on fewer addresses')
  return token
}

export function decodeJoinToken (token: string): JoinInfo {
  if (typeof token !== 'string') badToken('not a string')
  token = token.trim()
  if (token.length > MAX_TOKEN_CHARS) badToken(`longer than ${MAX_TOKEN_CHARS} characters`)
  if (!token.startsWith(JOIN_TOKEN_PREFIX)) badToken(`it does not start with "${JOIN_TOKEN_PREFIX}"`)
  const body = token.slice(JOIN_TOKEN_PREFIX.length)
  // Buffer's base64 decoder skips characters it does not know; check the alphabet first so
  // a token mangled in transit is reported rather than half-read
  if (!/^[A-Za-z0-9_-]+$/.test(body)) badToken('it is not base64url after the prefix (was it cut or wrapped?)')
  let v: unknown
  try {
    v = decode(Buffer.from(body, 'base64url'), { rejectDuplicateMapKeys: true })
  } catch {
    badToken('its contents do not decode (was it cut short?)')
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) badToken('its contents are not a map')
  const { k, a } = v as Record<string, unknown>
  if (!(k instanceof Uint8Array) || k.byteLength !== SWARM_KEY_RAW_BYTES) badToken(`the swarm key is not ${SWARM_KEY_RAW_BYTES} bytes`)
  if (!Array.isArray(a) || a.length === 0) badToken('it holds no address')
  checkAddrs(a, badToken)
  return { swarmKey: swarmKeyFromRaw(k), addrs: a as string[] }
}

function checkAddrs (a: unknown[], fail: (why: string) => never): void {
  if (a.length > MAX_TOKEN_ADDRS) fail(`it holds more than ${MAX_TOKEN_ADDRS} addresses`)
  for (const s of a) {
    const ma = parseMultiaddr(s)
    const shown = typeof s === 'string' ? JSON.stringify(s.slice(0, 80)) : typeof s
    if (ma === undefined) fail(`${shown} is not a multiaddr`)
    if (addrPeerId(ma) === undefined) fail(`${shown} does not end in /p2p/<peer id>`)
  }
}
