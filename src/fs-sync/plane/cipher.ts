/**
 * The data plane's frame cipher (DESIGN §2, "bulk bytes may leave the libp2p stream").
 *
 * - **AES-256-GCM from node:crypto**: with AES-NI it seals several GB/s on one core, where
 *   the libp2p stream pays Noise's ChaCha20-Poly1305 plus yamux's framing on the agent's one
 *   thread (`transport` bench).
 * - **Keys**: the provider draws a 32-byte session key and hands it to the puller over the
 *   sync stream, which Noise already encrypts and authenticates to the member the export is
 *   for. Each connection's two keys (one per direction) are HKDF-SHA256 of that key, salted
 *   with a fresh nonce from each side, so no (key, nonce) pair ever repeats, not even when a
 *   recorded connection is replayed against the server.
 * - **Nonces**: record n of a direction is sealed with nonce n (a 96-bit big-endian counter).
 *   A record dropped, repeated, reordered or altered fails its tag, and the connection ends.
 * - **Records** (version 2): what is sealed is a record of frames (common/channel.ts), not
 *   one frame: a first sync's 24,000 chunk replies cost one cipher, one tag and one write
 *   each in version 1.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import { VgridError } from '../../common/errors.js'
import { FRAME_HEAD_BYTES, type FrameCipher } from '../../common/channel.js'

export const PLANE_KEY_BYTES = 32
/** Each side's contribution to a connection's keys. */
export const PLANE_NONCE_BYTES = 16
export const PLANE_TAG_BYTES = 16
const IV_BYTES = 12
const TWO_POW_32 = 2 ** 32

/** The cap on a sealed record when no message may pass `maxFrameBytes`: one such frame, its length and the tag. */
export function planeRecordCap (maxFrameBytes: number): number {
  return maxFrameBytes + FRAME_HEAD_BYTES + PLANE_TAG_BYTES
}

export function newPlaneKey (): Buffer {
  return randomBytes(PLANE_KEY_BYTES)
}

export function newPlaneNonce (): Buffer {
  return randomBytes(PLANE_NONCE_BYTES)
}

/** The counter nonce of one direction. */
class Counter {
  private n = 0

  next (): Buffer {
    const iv = Buffer.alloc(IV_BYTES)
    iv.writeUInt32BE(Math.floor(this.n / TWO_POW_32), 4)
    iv.writeUInt32BE(this.n % TWO_POW_32, 8)
    this.n++
    return iv
  }
}

/**
 * The cipher of one end of a connection. `client` is the end that dialled; both ends derive
 * the same two keys from the session key and the two nonces, and each seals with its own.
 */
export function frameCipher (sessionKey: Uint8Array, clientNonce: Uint8Array, serverNonce: Uint8Array, client: boolean): FrameCipher {
  const salt = Buffer.concat([clientNonce, serverNonce])
  const derive = (info: string): Buffer => Buffer.from(hkdfSync('sha256', sessionKey, salt, info, PLANE_KEY_BYTES))
  const c2s = derive('vgrid data plane 2: client to server')
  const s2c = derive('vgrid data plane 2: server to client')
  const sealKey = client ? c2s : s2c
  const openKey = client ? s2c : c2s
  const sent = new Counter()
  const got = new Counter()
  return {
    overhead: PLANE_TAG_BYTES,
    seal (body) {
      const c = createCipheriv('aes-256-gcm', sealKey, sent.next())
      // a body in pieces is sealed piece by piece: one ciphertext piece each, no join
      const out = body instanceof Uint8Array ? [c.update(body)] : body.map((piece) => c.update(piece))
      c.final()
      out.push(c.getAuthTag())
      return out
    },
    open (sealed) {
      if (sealed.byteLength < PLANE_TAG_BYTES) throw new VgridError('ERR_BAD_MESSAGE', 'a data plane record shorter than its tag')
      const d = createDecipheriv('aes-256-gcm', openKey, got.next())
      const end = sealed.byteLength - PLANE_TAG_BYTES
      d.setAuthTag(sealed.subarray(end))
      const body = d.update(sealed.subarray(0, end))
      try {
        d.final()
      } catch {
        throw new VgridError('ERR_BAD_MESSAGE', 'a data plane record failed its authentication tag')
      }
      return body
    }
  }
}
