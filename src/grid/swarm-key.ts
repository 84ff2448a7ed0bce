/**
 * The grid's secret, 32 random bytes. Whoever holds it can connect; nobody else can finish a
 * handshake. On disk it is the 95-byte "v1" private-network key file of go-libp2p and
 * js-libp2p: `/key/swarm/psk/1.0.0/\n/base16/\n<64 hex digits>`. It is bound into each Noise
 * handshake as its prologue (swarmPrologue), which both sides must hold alike.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { VgridError } from '../common/errors.js'
import { SWARM_KEY_FILE } from './constants.js'
import { writePrivateFile } from './identity.js'

export const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n'
export const SWARM_KEY_RAW_BYTES = 32
export const SWARM_KEY_FILE_BYTES = SWARM_KEY_HEADER.length + 2 * SWARM_KEY_RAW_BYTES

/** A new random swarm key in file form. */
export function createSwarmKey (): Uint8Array {
  return swarmKeyFromRaw(randomBytes(SWARM_KEY_RAW_BYTES))
}

/** Names what the prologue binds, so the key's hash serves no other purpose. */
const PROLOGUE_CONTEXT = 'vgrid swarm key in the noise prologue, v1\0'

/**
 * The Noise prologue of a grid: a hash of its key. Both sides mix the prologue into the
 * handshake hash, which authenticates each encrypted handshake message, so a peer with
 * another key (or none) fails at the first of them, before identify or any other protocol.
 * A hash and not the key itself: the prologue is never sent, but nothing needs the key raw.
 */
export function swarmPrologue (file: Uint8Array): Uint8Array {
  const raw = parseSwarmKey(file)
  if (raw === undefined) throw new VgridError('ERR_BAD_ARGUMENT', 'not a valid swarm key')
  return createHash('sha256').update(PROLOGUE_CONTEXT).update(raw).digest()
}

/** The key in `$home/swarm.key`, or undefined when there is none yet. */
export async function loadSwarmKey (home: string): Promise<Uint8Array | undefined> {
  const file = join(home, SWARM_KEY_FILE)
  let bytes: Buffer
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const raw = parseSwarmKey(bytes)
  if (raw === undefined) {
    throw new VgridError('ERR_BAD_ARGUMENT', `${file} is not a valid swarm key`,
      'it should hold "/key/swarm/psk/1.0.0/", "/base16/" and 64 hex digits on three lines; ' +
      'copy it again from a member of the grid, or join with a fresh token (vgrid agent --join TOKEN)')
  }
  return swarmKeyFromRaw(raw)
}

export async function writeSwarmKey (home: string, key: Uint8Array): Promise<void> {
  const raw = parseSwarmKey(key)
  if (raw === undefined) throw new VgridError('ERR_BAD_ARGUMENT', 'not a valid swarm key')
  await writePrivateFile(home, SWARM_KEY_FILE, swarmKeyFromRaw(raw))
}

/**
 * The 32 secret bytes of a swarm key file, or undefined when it is malformed. A trailing
 * newline and CRLF line ends (a key copied through an editor) are accepted.
 */
export function parseSwarmKey (file: Uint8Array): Uint8Array | undefined {
  if (file.byteLength > 4 * SWARM_KEY_FILE_BYTES) return undefined
  const lines = Buffer.from(file).toString('latin1').split(/\r?\n/)
  while (lines.length > 3 && lines[lines.length - 1].trim() === '') lines.pop()
  if (lines.length !== 3) return undefined
  const [tag, codec, hex] = lines.map((l) => l.trim())
  if (tag !== '/key/swarm/psk/1.0.0/' || codec !== '/base16/') return undefined
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return undefined
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

/** The canonical 95-byte file form of 32 raw key bytes (libp2p's private-network key file). */
export function swarmKeyFromRaw (raw: Uint8Array): Uint8Array {
  if (raw.byteLength !== SWARM_KEY_RAW_BYTES) throw new VgridError('ERR_BAD_ARGUMENT', `a swarm key has ${SWARM_KEY_RAW_BYTES} bytes, not ${raw.byteLength}`)
  return new TextEncoder().encode(SWARM_KEY_HEADER + Buffer.from(raw).toString('hex'))
}
