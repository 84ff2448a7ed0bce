/**
 * Join tokens: one copy-pasteable word that carries the grid's swarm key and addresses of a
 * member, so `vgrid agent --join-file FILE` is all another machine needs. The form is
 * `vgrid2.` + base64url(CBOR { k: 32 key bytes, a: [multiaddr …/p2p/<id>, …] }) + checksum,
 * the checksum being the CRC-32 of everything before it, as 6 base64url characters. A CRC-32
 * catches every error within 32 consecutive bits of the text, so every changed character and
 * every swap of two neighbours is refused before the agent writes a wrong key and waits
 * alone. Whoever holds a token can join the grid: it is a secret.
 *
 * `vgrid1.` tokens (no checksum) are still accepted, flagged `legacy` for a warning: they sit
 * in scripts and notes of existing grids, and a typo in one still shows up, later, as the
 * agent's "could not reach any member" warning.
 */
import { crc32 } from 'node:zlib'
import { encode, decode } from 'cborg'
import { VgridError } from '../common/errors.js'
import { addrPeerId, parseMultiaddr } from './addrs.js'
import { JOIN_TOKEN_PREFIX, LEGACY_JOIN_TOKEN_PREFIX, MAX_TOKEN_ADDRS, MAX_TOKEN_CHARS, TOKEN_CHECKSUM_CHARS } from './constants.js'
import { SWARM_KEY_RAW_BYTES, parseSwarmKey, swarmKeyFromRaw } from './swarm-key.js'

export interface JoinInfo {
  /** The swarm key in file form (95 bytes, swarm-key.ts). */
  swarmKey: Uint8Array
  /** Multiaddrs of members, each ending in /p2p/<id>. */
  addrs: string[]
  /** A `vgrid1.` token: it has no checksum, so a typo in it went unnoticed. */
  legacy?: true
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
  const text = JOIN_TOKEN_PREFIX + Buffer.from(encode({ k, a: info.addrs.slice(0, MAX_TOKEN_ADDRS) })).toString('base64url')
  const token = text + checksum(text)
  if (token.length > MAX_TOKEN_CHARS) throw new VgridError('ERR_BAD_ARGUMENT', 'the addresses do not fit in a join token', 'listen on fewer addresses')
  return token
}

export function decodeJoinToken (token: string): JoinInfo {
  if (typeof token !== 'string') badToken('not a string')
  token = token.trim()
  if (token.length > MAX_TOKEN_CHARS) badToken(`longer than ${MAX_TOKEN_CHARS} characters`)
  const legacy = token.startsWith(LEGACY_JOIN_TOKEN_PREFIX)
  if (!legacy && !token.startsWith(JOIN_TOKEN_PREFIX)) badToken(`it does not start with "${JOIN_TOKEN_PREFIX}"`)
  let body = token.slice(JOIN_TOKEN_PREFIX.length)
  // Buffer's base64 decoder skips characters it does not know; check the alphabet first so
  // a token mangled in transit is reported rather than half-read
  if (!/^[A-Za-z0-9_-]+$/.test(body)) badToken('it is not base64url after the prefix (was it cut or wrapped?)')
  if (!legacy) {
    // compared as text: the last character of the checksum has spare bits, which a decode would ignore
    const text = token.slice(0, -TOKEN_CHECKSUM_CHARS)
    if (body.length <= TOKEN_CHECKSUM_CHARS || checksum(text) !== token.slice(-TOKEN_CHECKSUM_CHARS)) {
      badToken('its checksum does not match: a character was changed, added or lost in the copy')
    }
    body = text.slice(JOIN_TOKEN_PREFIX.length)
  }
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
  return { swarmKey: swarmKeyFromRaw(k), addrs: a as string[], ...(legacy ? { legacy: true as const } : {}) }
}

/** The CRC-32 of `text`, big-endian, as 6 base64url characters. */
function checksum (text: string): string {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(crc32(text))
  return b.toString('base64url')
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
