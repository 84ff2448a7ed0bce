/**
 * The providing side of `/vgrid/sync/1.0.0`. An export is one scanned tree: its encoded
 * records (in memory) and where each chunk's bytes lie on this machine. Only the member it
 * was made for may open it, only its blobs are served, and a chunk read from a file that
 * changed since the scan is answered `missing` rather than with wrong bytes.
 */
import type { FrameChannel } from '../common/channel.js'
import { VgridError, toWire } from '../common/errors.js'
import { createLogger } from '../common/log.js'
import { parseSyncRequest, newSessionId, SYNC_PROTOCOL_VERSION, SYNC_IDLE_TIMEOUT_MS, SYNC_MAX_FRAME_BYTES } from '../protocol/sync.js'
import type { PlaneServer } from './plane/server.js'
import { isCode } from './write-file.js'
import { HASH_BYTES, type ChunkSource, type Hash } from './types.js'
import { closeQuietly, readSource } from './read-chunk.js'
import { withTimeout } from '../common/timeout.js'

const log = createLogger('sync')

export interface ChunkLookup {
  get: (hex: string) => ChunkSource | undefined
}

export interface ExportInit {
  rootHash: Hash
  /** Encoded directory records and chunk lists, by hex hash. */
  blobs: Map<string, Uint8Array>
  /** Where its chunks lie, by hex hash (looked up only when a chunk is asked for). */
  sources: ChunkLookup
  /** The only peer allowed to pull it. */
  peer: string
}

interface Export extends ExportInit {
  /** Called when a stream opens it. */
  onOpened: Array<() => void>
  /** Resolves when a puller has finished with it (its stream closed). */
  onPulled: Array<() => void>
}

export class ExportRegistry {
  private readonly exports = new Map<string, Export>()

  /** `plane`: the data plane listener that streams may ask for; without it, the stream carries all. */
  constructor (private readonly plane?: PlaneServer) {}

  add (init: ExportInit): string {
    const session = newSessionId()
    this.exports.set(session, { ...init, onOpened: [], onPulled: [] })
    return session
  }

  remove (session: string): void {
    this.exports.delete(session)
  }

  /** Sessions on offer now. */
  get size (): number {
    return this.exports.size
  }

  /**
   * Resolves when a stream that opened the session ends, or when none has opened it within
   * `openTimeoutMs` (a puller that started is bounded by the stream's idle timeout instead).
   */
  async pulled (session: string, openTimeoutMs: number): Promise<void> {
    const e = this.exports.get(session)
    if (e === undefined) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, openTimeoutMs)
      e.onOpened.push(() => { clearTimeout(timer) })
      e.onPulled.push(() => { clearTimeout(timer); resolve() })
    })
  }

  /** The protocol handler: serves one stream. */
  readonly serve = async (channel: FrameChannel, remotePeer: string): Promise<void> => {
    const files = new Map<string, number>()
    let exp: Export | undefined
    let grant: Awaited<ReturnType<PlaneServer['grant']>>
    let askedPlane = false
    try {
      const open = parseSyncRequest(await idle(channel))
      if (open.t !== 'open') throw new VgridError('ERR_BAD_MESSAGE', 'a sync stream must start with open')
      if (open.v !== SYNC_PROTOCOL_VERSION) throw new VgridError('ERR_AGENT_VERSION', `sync protocol ${open.v} is not ${SYNC_PROTOCOL_VERSION}`)
      exp = this.exports.get(open.session)
      if (exp === undefined || exp.peer !== remotePeer) throw new VgridError('ERR_BAD_MESSAGE', 'no such sync session')
      exp.onOpened.splice(0).forEach((fn) => { fn() })
      await channel.send({ t: 'ok', root: exp.rootHash })
      const opened = exp
      for (;;) {
        // while the plane carries the wants, the stream is quiet and only holds the session open
        const raw = await idle(channel, () => (grant?.live() ?? 0) > 0)
        if (raw === undefined) return
        const req = parseSyncRequest(raw)
        if (req.t === 'plane') {
          if (askedPlane) throw new VgridError('ERR_BAD_MESSAGE', 'the data plane was asked for twice')
          askedPlane = true
          grant = await this.plane?.grant((h) => lookup(opened, h), SYNC_MAX_FRAME_BYTES)
          await channel.send(grant === undefined ? { t: 'plane' } : { t: 'plane', grant: grant.offer })
          continue
        }
        if (req.t !== 'want') throw new VgridError('ERR_BAD_MESSAGE', 'expected want')
        await this.answer(channel, exp, req.hashes, files)
      }
    } catch (err) {
      if (!channel.closed) {
        log.warn(`refused a sync request from ${remotePeer}`, err)
        await channel.send({ t: 'error', error: toWire(err) }).catch(() => {})
      }
    } finally {
      grant?.end()
      for (const fd of files.values()) closeQuietly(fd)
      await channel.close().catch(() => {})
      if (exp !== undefined) {
        exp.onPulled.splice(0).forEach((fn) => { fn() })
      }
    }
  }

  private async answer (channel: FrameChannel, exp: Export, hashes: Uint8Array, files: Map<string, number>): Promise<void> {
    for (let off = 0; off < hashes.byteLength; off += HASH_BYTES) {
      const h = hashes.subarray(off, off + HASH_BYTES)
      const data = this.read(exp, h, files)
      await channel.send(data === undefined ? { t: 'missing', h } : { t: 'blob', h, d: data })
    }
  }

  private read (exp: Export, h: Uint8Array, files: Map<string, number>): Uint8Array | undefined {
    const found = lookup(exp, h)
    // The file may have changed since the scan: never serve bytes that are not the chunk.
    return found === undefined || found instanceof Uint8Array ? found : readSource(found, h, files)
  }
}

/** A record's bytes, or where a chunk's bytes lie; undefined when the blob is not in the export. */
function lookup (exp: Export, h: Uint8Array): Uint8Array | ChunkSource | undefined {
  const hex = Buffer.from(h).toString('hex')
  return exp.blobs.get(hex) ?? exp.sources.get(hex)
}

/**
 * The next request, or ERR_TIMEOUT after SYNC_IDLE_TIMEOUT_MS of silence, unless `busy()` says
 * the silence is expected (the stream's wants go over the data plane) when the time is up.
 */
async function idle (channel: FrameChannel, busy?: () => boolean): Promise<unknown> {
  const next = channel.recv()
  for (;;) {
    try {
      return await withTimeout(next, SYNC_IDLE_TIMEOUT_MS, `no sync request for ${SYNC_IDLE_TIMEOUT_MS} ms`)
    } catch (err) {
      if (!isCode(err, 'ERR_TIMEOUT') || busy?.() !== true) throw err
    }
  }
}
