/**
 * The data plane's ceiling here: the chunks of a 300 MB file pulled as a sync pulls them
 * (the fetcher's window, `want`s of up to 1,024 hashes) over one connection, threads at both
 * ends: the provider's reads the file and seals, the puller's opens, decodes and hashes. No
 * store and no copy are written, so a first sync of the same file cannot beat it.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createHash } from 'node:crypto'
import { memoryChannelPair } from '../src/common/channel.js'
import { BlobFetcher, ExportRegistry, PlaneServer, PlanePullers, chunkFileSync, type ChunkSource } from '../src/fs-sync/index.js'
import { SYNC_MAX_FRAME_BYTES } from '../src/protocol/sync.js'
import { randomFile } from './files.js'
import type { Figure } from './grid-vrun.js'

const FILE_BYTES = 300 * 1e6
const PEER = 'bench'

export async function benchPlane (): Promise<Figure[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-bench-plane-'))
  const server = new PlaneServer('127.0.0.1', 1)
  const pullers = new PlanePullers(1)
  try {
    const file = path.join(dir, 'big.bin')
    randomFile(file, FILE_BYTES)
    const st = fs.statSync(file, { bigint: true })
    const stat = { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino }
    const refs = chunkFileSync(file)
    const sources = new Map<string, ChunkSource>()
    let offset = 0
    for (const r of refs) {
      sources.set(Buffer.from(r.hash).toString('hex'), { path: file, offset, size: r.size, stat })
      offset += r.size
    }
    const root = Uint8Array.of(1)
    const rootHash = createHash('sha256').update(root).digest()
    const registry = new ExportRegistry(server)
    const once = async (): Promise<number> => {
      const session = registry.add({ rootHash, blobs: new Map([[rootHash.toString('hex'), root]]), sources: { get: (hex) => sources.get(hex) }, peer: PEER })
      const [near, far] = memoryChannelPair()
      void registry.serve(far, PEER)
      const fetcher = await BlobFetcher.open(near, session, async (grant) => [{ channel: await pullers.dial('127.0.0.1', grant.ports[0]!, grant, SYNC_MAX_FRAME_BYTES), verified: true }])
      if (fetcher.planeConnections !== 1) throw new Error('the pull did not go over the data plane')
      const t0 = performance.now()
      await Promise.all(refs.map(async (r) => { (await fetcher.fetchHeld(r.hash, r.size)).release() }))
      const ms = performance.now() - t0
      fetcher.close()
      return FILE_BYTES / 1e6 / (ms / 1000)
    }
    await once() // warm up: the threads start
    const rates = [await once(), await once()]
    return [{ name: 'one data plane connection, threads at both ends: a 300 MB file\'s chunks read, sealed, opened, hashed; best of 2', value: Math.round(Math.max(...rates)), unit: 'MB/s' }]
  } finally {
    await pullers.close()
    await server.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
