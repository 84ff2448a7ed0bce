/**
 * The agent's persistent identity: an Ed25519 key in `$VGRID_HOME/identity.key` (libp2p's
 * protobuf form), so the peer id, and with it every record that names this agent, survives
 * restarts.
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { VgridError } from '../common/errors.js'
import { IDENTITY_FILE } from './constants.js'

/** A protobuf-encoded Ed25519 private key is 68 bytes; anything far larger is not ours. */
const MAX_IDENTITY_BYTES = 4096

export async function loadOrCreateIdentity (home: string): Promise<PrivateKey> {
  const file = join(home, IDENTITY_FILE)
  let bytes: Uint8Array | undefined
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (bytes !== undefined) return parseIdentity(bytes, file)

  const key = await generateKeyPair('Ed25519')
  await writePrivateFile(home, IDENTITY_FILE, privateKeyToProtobuf(key))
  return key
}

function parseIdentity (bytes: Uint8Array, file: string): PrivateKey {
  const hint = `move ${file} away to create a new identity (this agent then gets a new peer id)`
  if (bytes.byteLength > MAX_IDENTITY_BYTES) throw new VgridError('ERR_BAD_ARGUMENT', `${file} is not an identity key`, hint)
  try {
    const key = privateKeyFromProtobuf(bytes)
    if (key.type !== 'Ed25519') throw new Error(`a ${key.type} key, not Ed25519`)
    return key
  } catch (err) {
    throw new VgridError('ERR_BAD_ARGUMENT', `${file} is not a valid identity key: ${(err as Error).message}`, hint)
  }
}

/**
 * Writes a secret file readable by its owner only. It goes to a temporary name first and is
 * renamed, so a crash never leaves a half-written key behind.
 */
export async function writePrivateFile (home: string, name: string, data: Uint8Array): Promise<void> {
  await mkdir(home, { recursive: true, mode: 0o700 })
  const file = join(home, name)
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, data, { mode: 0o600 })
  // the umask may have narrowed the mode on creation, never widened it; make it exact
  await chmod(tmp, 0o600)
  await rename(tmp, file)
}
