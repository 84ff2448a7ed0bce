/**
 * `/vgrid/sync/1.0.0`: one member pulls the blobs of a tree (directory records, chunk lists,
 * chunks) from the member that exported it. The puller opens with the export's session id
 * (a 128-bit secret handed only to the member the task was placed on), then sends `want`
 * batches; the provider answers each hash, in order, with `blob` or `missing`. Every blob is
 * verified against its hash by the puller; the provider only ever serves what it exported.
 *
 * `plane` (once, before any want) asks for the data plane (fs-sync/plane/): the provider
 * answers with its ports, a ticket and a session key, and the same wants and answers then go
 * over TCP connections sealed with that key; a provider without one answers with no grant,
 * and the stream carries everything as before.
 */
import { obj, int, bytes, str, bad } from '../common/validate.js'
import { HASH_BYTES, MAX_BLOB_BYTES } from '../fs-sync/types.js'
import { CborWriter } from '../fs-sync/cbor-writer.js'
import { PLANE_KEY_BYTES } from '../fs-sync/plane/cipher.js'
import { PLANE_TICKET_BYTES } from '../fs-sync/plane/hello.js'

export const SYNC_PROTOCOL = '/vgrid/sync/1.0.0'
export const SYNC_PROTOCOL_VERSION = 1
/** At most this many hashes in one want. */
export const MAX_WANT_HASHES = 1024
/** A sync stream that carries no request for this long is closed. */
export const SYNC_IDLE_TIMEOUT_MS = 60_000
/** Bytes of blobs asked for and not yet received, per stream. */
export const PULL_WINDOW_BYTES = 24 * 1024 * 1024
/** Listeners one data plane grant may name. */
export const MAX_PLANE_PORTS = 16
/** A blob whose bytes do not match its hash is asked for again this many times. */
export const HASH_MISMATCH_RETRIES = 2
/** Frames on this protocol: a blob of MAX_BLOB_BYTES plus headers. */
export const SYNC_MAX_FRAME_BYTES = MAX_BLOB_BYTES + 64 * 1024

const SESSION_RE = /^[0-9a-f]{32}$/

export type SyncRequest =
  | { t: 'open', v: number, session: string }
  | { t: 'want', hashes: Uint8Array }
  | { t: 'plane' }

export type SyncReply =
  | { t: 'ok', root: Uint8Array }
  | { t: 'blob', h: Uint8Array, d: Uint8Array }
  | { t: 'missing', h: Uint8Array }
  | { t: 'plane', grant?: { ports: number[], ticket: Uint8Array, key: Uint8Array } }
  | { t: 'error', error: { code: string, message: string } }

/** The blob replies' encoder: one per thread, reused (the functions below run to the end at once). */
const cbor = new CborWriter()
/** `{` of three entries, then "d": (its byte string follows) */
const REPLY_OPEN = cbor.reset().map(3).key('d').bytes()
/** "h": and the head of a hash's byte string */
const HASH_KEY = cbor.reset().key('h').binHead(HASH_BYTES).bytes()
/** "t": "blob", the last entry */
const REPLY_TYPE = cbor.reset().key('t').text('blob').bytes()

/**
 * The reply `{ t: 'blob', h, d }` as the pieces of its CBOR encoding, byte for byte what
 * cborg's encode gives (CborWriter; keys in its order, d, h, t), with `d` itself one of the
 * pieces: a data plane connection seals a 256 KiB chunk without first copying it into the
 * encoding (SocketChannel.sendPieces).
 */
export function blobReplyPieces (h: Uint8Array, d: Uint8Array): Uint8Array[] {
  const start = cbor.reset().map(3).key('d').binHead(d.byteLength).bytes()
  const end = cbor.reset().key('h').bin(h).key('t').text('blob').bytes()
  return [start, d, end]
}

/**
 * A blob reply laid out exactly as blobReplyPieces writes it (the shortest length heads, the
 * keys in that order, nothing after), read without cborg: on a data plane connection cborg's
 * decoder cost ~10 µs a frame, as much as opening a 3.5 kB frame, on the puller's busiest
 * thread. Anything else, well formed or not, gives undefined, and the caller decodes it the
 * general way (decodeBody), which then decides. `h` and `d` are views into `body`.
 */
export function decodeBlobReply (body: Uint8Array): { t: 'blob', h: Uint8Array, d: Uint8Array } | undefined {
  if (!bytesAt(body, 0, REPLY_OPEN)) return undefined
  const at = byteStringAt(body, REPLY_OPEN.byteLength)
  if (at === undefined || at.length > MAX_BLOB_BYTES) return undefined
  const hAt = at.start + at.length + HASH_KEY.byteLength
  if (hAt + HASH_BYTES + REPLY_TYPE.byteLength !== body.byteLength) return undefined
  if (!bytesAt(body, hAt - HASH_KEY.byteLength, HASH_KEY) || !bytesAt(body, hAt + HASH_BYTES, REPLY_TYPE)) return undefined
  return { t: 'blob', h: body.subarray(hAt, hAt + HASH_BYTES), d: body.subarray(at.start, at.start + at.length) }
}

/** Whether `b` holds `expected` at `i`. */
function bytesAt (b: Uint8Array, i: number, expected: Uint8Array): boolean {
  if (i + expected.byteLength > b.byteLength) return false
  for (let k = 0; k < expected.byteLength; k++) if (b[i + k] !== expected[k]) return false
  return true
}

/** The byte string whose head is at `i`, where the head is the shortest for its length (as CborWriter writes it). */
function byteStringAt (b: Uint8Array, i: number): { start: number, length: number } | undefined {
  const first = b[i]!
  let length: number
  let start: number
  if (first >= 0x40 && first < 0x58) { length = first - 0x40; start = i + 1 }
  else if (first === 0x58) { length = b[i + 1]!; start = i + 2; if (length < 24) return undefined }
  else if (first === 0x59) { length = (b[i + 1]! << 8) | b[i + 2]!; start = i + 3; if (length < 0x100) return undefined }
  else if (first === 0x5a) { length = ((b[i + 1]! << 24) >>> 0) + ((b[i + 2]! << 16) | (b[i + 3]! << 8) | b[i + 4]!); start = i + 5; if (length < 0x10000) return undefined }
  else return undefined
  return start + length <= b.byteLength ? { start, length } : undefined
}

export function parseSyncRequest (v: unknown): SyncRequest {
  const m = obj(v, 'sync request')
  if (m.t === 'open') {
    const session = str(m.session, 'session', 32)
    if (!SESSION_RE.test(session)) bad('session is not a session id')
    return { t: 'open', v: int(m.v, 'v', 0, 2 ** 31), session }
  }
  if (m.t === 'want') {
    const hashes = bytes(m.hashes, 'hashes', MAX_WANT_HASHES * HASH_BYTES)
    if (hashes.byteLength === 0 || hashes.byteLength % HASH_BYTES !== 0) bad('hashes is not a list of 32-byte hashes')
    return { t: 'want', hashes }
  }
  if (m.t === 'plane') return { t: 'plane' }
  return bad(`unknown sync request ${String(m.t).slice(0, 32)}`)
}

export function parseSyncReply (v: unknown): SyncReply {
  const m = obj(v, 'sync reply')
  switch (m.t) {
    case 'ok': return { t: 'ok', root: hash(m.root, 'root') }
    case 'blob': return { t: 'blob', h: hash(m.h, 'h'), d: bytes(m.d, 'd', MAX_BLOB_BYTES) }
    case 'missing': return { t: 'missing', h: hash(m.h, 'h') }
    case 'plane': {
      if (m.grant === undefined) return { t: 'plane' }
      const g = obj(m.grant, 'grant')
      const ticket = bytes(g.ticket, 'grant.ticket', PLANE_TICKET_BYTES)
      const key = bytes(g.key, 'grant.key', PLANE_KEY_BYTES)
      if (ticket.byteLength !== PLANE_TICKET_BYTES || key.byteLength !== PLANE_KEY_BYTES) bad('grant has a ticket or key of the wrong size')
      if (!Array.isArray(g.ports) || g.ports.length === 0 || g.ports.length > MAX_PLANE_PORTS) bad(`grant.ports is not a list of 1 to ${MAX_PLANE_PORTS} ports`)
      return { t: 'plane', grant: { ports: (g.ports as unknown[]).map((p) => int(p, 'grant.ports[]', 1, 65535)), ticket, key } }
    }
    case 'error': {
      const e = obj(m.error, 'error')
      return { t: 'error', error: { code: str(e.code, 'error.code', 64), message: str(e.message, 'error.message', 4096) } }
    }
    default: return bad(`unknown sync reply ${String(m.t).slice(0, 32)}`)
  }
}

function hash (v: unknown, what: string): Uint8Array {
  const h = bytes(v, what, HASH_BYTES)
  if (h.byteLength !== HASH_BYTES) bad(`${what} is not a 32-byte hash`)
  return h
}

export function newSessionId (): string {
  const b = new Uint8Array(16)
  crypto.getRandomValues(b)
  return Buffer.from(b).toString('hex')
}
