/**
 * The grid's secret: a libp2p private-network key (PSK). Whoever holds it can connect; nobody
 * else can even finish a handshake. On disk it is the 95-byte "v1" file that go-libp2p and
 * js-libp2p share: `/key/swarm/psk/1.0.0/\n/base16/\n<64 hex digits>`.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKey } from '@libp2p/pnet'
import { VgridError } from '../common/errors.js'
import { SWARM_KEY_FILE } from './constants.js'
import { writePrivateFile } from './identity.js'

export const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n'
export const SWARM_KEY_RAW_BYTES = 32
export const SWARM_KEY_FILE_BYTES = SWARM_KEY_HEADER.length + 2 * SWARM_KEY_RAW_BYTES

/** A new random swarm key in file form. */
export function createSwarmKey (): Uint8Array {
  const key = new Uint8Array(SWARM_KEY_FILE_BYTES)
  generateKey(key)
  return key
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

/** The canonical 95-byte file form of 32 raw key bytes, as @libp2p/pnet reads it. */
export function swarmKeyFromRaw (raw: Uint8Array): Uint8Array {
  if (raw.byteLength !== SWARM_KEY_RAW_BYTES) throw new VgridError('ERR_BAD_ARGUMENT', `a swarm key has ${SWARM_KEY_RAW_BYTES} bytes, not ${raw.byteLength}`)
  return new TextEncoder().encode(SWARM_KEY_HEADER + Buffer.from(raw).toString('hex'))
}
