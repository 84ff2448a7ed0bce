/**
 * The data plane on real loopback sockets: a puller that asks for it gets its blobs over a
 * sealed TCP connection instead of the sync stream, falls back to the stream when the
 * connection cannot be made, and the grant dies with the stream. Hostile connections (no
 * ticket, a ticket without the key, a replayed connection, too many of them, silence) are
 * closed without a byte of answer and never reach the export.
 */
import { afterEach, describe, expect, it } from 'vitest'
import net from 'node:net'
import path from 'node:path'
import { existsSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { encode } from 'cborg'
import { decodeBody, memoryChannelPair, type FrameChannel } from '../../src/common/channel.js'
import { BlobFetcher, ExportRegistry, PlaneServer, dialPlane } from '../../src/fs-sync/index.js'
import { blobReplyPieces, decodeBlobReply, parseSyncReply, SYNC_MAX_FRAME_BYTES } from '../../src/protocol/sync.js'
import { frameCipher, newPlaneNonce } from '../../src/fs-sync/plane/cipher.js'
import { PLANE_MAGIC } from '../../src/fs-sync/plane/hello.js'
import { MAX_PLANE_CONNECTIONS, type PlaneGrant } from '../../src/fs-sync/plane/server.js'
import { Unreachable } from '../../src/fs-sync/plane/unreachable.js'
import { waitFor } from '../helpers/wait.js'

const PEER = 'puller'
const sha = (b: Uint8Array): Uint8Array => createHash('sha256').update(b).digest()
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

describe('the data plane cipher', () => {
  const key = randomBytes(32)
  const cn = newPlaneNonce()
  const sn = newPlaneNonce()

  it('opens what the other end sealed, in order, and nothing altered, replayed or its own', () => {
    const client = frameCipher(key, cn, sn, true)
    const server = frameCipher(key, cn, sn, false)
    const one = Buffer.concat(client.seal(Buffer.from('first')))
    const two = Buffer.concat(client.seal(Buffer.from('second')))
    expect(Buffer.from(server.open(one)).toString()).toBe('first')
    // a frame seen again (a replay) or out of order fails its tag
    expect(() => frameCipher(key, cn, sn, false).open(two)).toThrow(/authentication tag/)
    expect(Buffer.from(server.open(two)).toString()).toBe('second')
    expect(() => server.open(two)).toThrow(/authentication tag/)
    // one flipped bit
    const three = Buffer.concat(client.seal(Buffer.from('third')))
    three[0]! ^= 1
    expect(() => server.open(three)).toThrow(expect.objectContaining({ code: 'ERR_BAD_MESSAGE' }))
    // each direction has its own key: a client cannot open its own frames
    expect(() => frameCipher(key, cn, sn, true).open(Buffer.concat(frameCipher(key, cn, sn, true).seal(Buffer.from('x'))))).toThrow(/authentication tag/)
    // another nonce from either side, another key
    expect(() => frameCipher(key, newPlaneNonce(), sn, false).open(Buffer.concat(frameCipher(key, cn, sn, true).seal(Buffer.from('x'))))).toThrow(/authentication tag/)
  })
})

describe('a blob reply sealed in pieces', () => {
  it('seals a body given in pieces as their concatenation', () => {
    const key = randomBytes(32)
    const [cn, sn] = [newPlaneNonce(), newPlaneNonce()]
    const sealed = frameCipher(key, cn, sn, true).seal([Buffer.from('one '), Buffer.alloc(0), Buffer.from('two')])
    expect(sealed).toHaveLength(4) // a ciphertext per piece, then the tag
    expect(Buffer.from(frameCipher(key, cn, sn, false).open(Buffer.concat(sealed))).toString()).toBe('one two')
  })

  it.each([0, 1, 23, 24, 255, 256, 65_535, 65_536, 256 * 1024])('encodes %i bytes as cborg does, and parses back', (n) => {
    const h = randomBytes(32)
    const d = randomBytes(n)
    const pieces = blobReplyPieces(h, d)
    // the data itself is one of the pieces: it is never copied into the encoding
    expect(pieces[1]).toBe(d)
    const body = Buffer.concat(pieces)
    expect(body.equals(Buffer.from(encode({ t: 'blob', h, d })))).toBe(true)
    const reply = parseSyncReply(decodeBody(body))
    expect(reply).toMatchObject({ t: 'blob' })
    expect(Buffer.from((reply as { h: Uint8Array }).h).equals(h)).toBe(true)
    expect(Buffer.from((reply as { d: Uint8Array }).d).equals(d)).toBe(true)
    // and the puller reads it without cborg, to the same message
    const fast = decodeBlobReply(body)!
    expect(fast.t).toBe('blob')
    expect(Buffer.from(fast.h).equals(h)).toBe(true)
    expect(Buffer.from(fast.d).equals(d)).toBe(true)
  })

  it('reads without cborg only what cborg reads the same: anything else goes the general way', () => {
    const h = randomBytes(32)
    const body = (d: Uint8Array): Buffer => Buffer.concat(blobReplyPieces(h, d))
    const general = (b: Uint8Array): unknown => { try { return parseSyncReply(decodeBody(b)) } catch { return 'refused' } }
    const same = (b: Uint8Array): void => {
      const fast = decodeBlobReply(b)
      if (fast === undefined) return
      const g = general(b) as { t: string, h: Uint8Array, d: Uint8Array }
      expect(g.t).toBe('blob')
      expect(Buffer.from(g.h).equals(Buffer.from(fast.h))).toBe(true)
      expect(Buffer.from(g.d).equals(Buffer.from(fast.d))).toBe(true)
    }
    const ok = body(randomBytes(300))
    // well formed, but not the layout it knows: another key order, a longer length head than needed,
    // a byte after the end, another t, a 31-byte hash
    const others = [
      Buffer.concat([Uint8Array.of(0xa3, 0x61, 0x74, 0x64, 0x62, 0x6c, 0x6f, 0x62, 0x61, 0x68, 0x58, 0x20), h, Uint8Array.of(0x61, 0x64, 0x45), randomBytes(5)]),
      Buffer.concat([Uint8Array.of(0xa3, 0x61, 0x64, 0x59, 0x00, 0x05), randomBytes(5), ok.subarray(ok.length - 41)]),
      Buffer.concat([ok, Uint8Array.of(0)]),
      Buffer.from(encode({ t: 'blob!', h, d: randomBytes(5) })),
      Buffer.from(encode({ t: 'blob', h: h.subarray(1), d: randomBytes(5) })),
      Buffer.from(encode({ t: 'missing', h }))
    ]
    for (const o of others) {
      expect(decodeBlobReply(o)).toBeUndefined()
    }
    // every body cut short, and a thousand with one byte changed: read the same both ways, or left to cborg
    for (let n = 0; n < ok.length; n++) expect(decodeBlobReply(ok.subarray(0, n))).toBeUndefined()
    for (let i = 0; i < 1000; i++) {
      const b = Buffer.from(ok)
      b[i % b.length] = randomBytes(1)[0]!
      same(b)
    }
  })
})

// The data plane's threads load compiled JavaScript: this runs against the build `npm test` makes first.
const DIST = path.resolve('dist/src/fs-sync/index.js')
const HAS_DIST = existsSync(DIST) && existsSync(path.resolve('dist/src/fs-sync/plane/pull-worker.js'))

let plane: PlaneServer | undefined
afterEach(async () => { await plane?.close(); plane = undefined })

/** An export of `count` random blobs behind a plane listener; the stream's wants are counted. */
async function setUp (count: number, opts: { dial?: (grant: PlaneGrant) => Promise<FrameChannel>, free?: (data: Uint8Array) => boolean, extra?: Uint8Array[], verified?: boolean } = {}): Promise<{ fetcher: BlobFetcher, hashes: Uint8Array[], blobs: Map<string, Uint8Array>, streamWants: () => number, server: PlaneServer }> {
  const server = plane = new PlaneServer('127.0.0.1')
  const blobs = new Map<string, Uint8Array>()
  const hashes: Uint8Array[] = []
  for (const data of [...Array.from({ length: count }, (_, i) => randomBytes(64 * 1024 + i)), ...opts.extra ?? []]) {
    blobs.set(hex(sha(data)), data)
    hashes.push(sha(data))
  }
  const rootRecord = Uint8Array.of(1, 2, 3)
  blobs.set(hex(sha(rootRecord)), rootRecord)
  const registry = new ExportRegistry(server)
  const session = registry.add({ rootHash: sha(rootRecord), blobs, sources: { get: () => undefined }, peer: PEER })
  const [near, far] = memoryChannelPair()
  let wants = 0
  const counting: FrameChannel = {
    get closed () { return near.closed },
    send: async (msg) => {
      if ((msg as { t: string }).t === 'want') wants++
      await near.send(msg)
    },
    recv: async () => await near.recv(),
    close: async () => { await near.close() },
    destroy: (err) => { near.destroy(err) }
  }
  void registry.serve(far, PEER)
  const dial = opts.dial ?? (async (grant: PlaneGrant) => await dialPlane('127.0.0.1', grant.ports[0]!, grant, SYNC_MAX_FRAME_BYTES))
  const fetcher = await BlobFetcher.open(counting, session, async (grant) => [{ channel: await dial(grant), verified: opts.verified ?? false, ...(opts.free !== undefined ? { free: opts.free } : {}) }])
  return { fetcher, hashes, blobs, streamWants: () => wants, server }
}

/** What a connection sends back after `bytes`, until it closes: [bytes received, closed]. */
async function answerTo (port: number, bytes: Uint8Array[], timeoutMs = 15_000): Promise<{ got: number, closed: boolean }> {
  const s = net.connect(port, '127.0.0.1')
  let got = 0
  let closed = false
  s.on('data', (d) => { got += d.byteLength })
  s.on('error', () => {})
  s.on('close', () => { closed = true })
  await new Promise((resolve) => s.once('connect', resolve))
  for (const b of bytes) s.write(b)
  await waitFor(() => closed, 'the server to close the connection', timeoutMs).catch(() => {})
  s.destroy()
  return { got, closed }
}

describe('the data plane', () => {
  it('carries the wants and blobs of a pull that asked for it, intact, none over the stream', async () => {
    const { fetcher, hashes, blobs, streamWants } = await setUp(40)
    expect(fetcher.planeConnections).toBe(1)
    const got = await Promise.all(hashes.map(async (h) => await fetcher.fetch(h)))
    got.forEach((d, i) => { expect(Buffer.compare(d, blobs.get(hex(hashes[i]!))!)).toBe(0) })
    expect(streamWants()).toBe(0)
    fetcher.close()
  })

  it('gives a blob\'s buffer back to its lane only when one caller alone had it, and once', async () => {
    const freed: Uint8Array[] = []
    const { fetcher, hashes } = await setUp(3, { free: (d) => { freed.push(d); return true } })
    const alone = await fetcher.fetchHeld(hashes[0]!, 64 * 1024)
    fetcher.giveBack(alone.data)
    fetcher.giveBack(alone.data)
    expect(freed).toEqual([alone.data])
    // two callers wait on the same blob: neither may give it back
    const [held, plain] = await Promise.all([fetcher.fetchHeld(hashes[1]!, 64 * 1024 + 1), fetcher.fetch(hashes[1]!)])
    expect(held.data).toBe(plain)
    fetcher.giveBack(plain)
    // bytes that did not come from the fetcher
    fetcher.giveBack(Uint8Array.from(alone.data))
    expect(freed).toHaveLength(1)
    expect(fetcher.stats.givenBack).toBe(1)
    fetcher.close()
  })

  it.skipIf(!HAS_DIST)('gives a record back to the data plane thread once every blob in it is given back (needs `npm run build`)', async () => {
    const dist = await import(DIST) as typeof import('../../src/fs-sync/index.js')
    const pullers = new dist.PlanePullers(1)
    try {
      const blobs = Array.from({ length: 20 }, (_, i) => randomBytes(1000 + i))
      const { fetcher, hashes } = await setUp(0, {
        extra: blobs,
        dial: async (grant) => await pullers.dial('127.0.0.1', grant.ports[0]!, grant, SYNC_MAX_FRAME_BYTES),
        free: (d) => pullers.giveBack(d),
        verified: true
      })
      const got = await Promise.all(hashes.map(async (h) => await fetcher.fetchHeld(h, 1000 + hashes.indexOf(h))))
      got.forEach((g, i) => { expect(Buffer.from(g.data).equals(blobs[i]!)).toBe(true) })
      // twenty small replies asked for at once come in one record or a few: they share buffers
      const records = new Set(got.map((g) => g.data.buffer))
      expect(records.size).toBeLessThan(got.length)
      const shared = got.filter((g) => got.filter((o) => o.data.buffer === g.data.buffer).length > 1)
      const record = shared[0]!.data.buffer
      const inIt = got.filter((g) => g.data.buffer === record)
      // all but one given back: the record stays, and its last blob still reads
      for (const g of inIt.slice(1)) fetcher.giveBack(g.data)
      await new Promise((resolve) => setImmediate(resolve))
      expect(record.byteLength).toBeGreaterThan(0)
      expect(Buffer.from(inIt[0]!.data).equals(blobs[got.indexOf(inIt[0]!)]!)).toBe(true)
      // the last one: the record goes back to its thread (moved: detached here)
      fetcher.giveBack(inIt[0]!.data)
      await waitFor(() => record.byteLength === 0, 'the record to go back to its thread', 5_000)
      expect(fetcher.stats.givenBack).toBe(inIt.length)
      fetcher.close()
    } finally {
      await pullers.close()
    }
  })

  it('ends with the stream that asked for it, and its connections with it', async () => {
    const { fetcher, hashes, server } = await setUp(2)
    await fetcher.fetch(hashes[0]!)
    expect(server.grantCount).toBe(1)
    fetcher.close()
    await waitFor(() => server.grantCount === 0, 'the grant to end', 5_000)
    await expect(fetcher.fetch(hashes[1]!)).rejects.toMatchObject({ code: 'ERR_PEER_LOST' })
  })

  it('falls back to the stream when the connection cannot be made', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => { resolve(p) }) })
    })
    const { fetcher, hashes, blobs, streamWants } = await setUp(5, { dial: async (grant) => await dialPlane('127.0.0.1', closedPort, grant, SYNC_MAX_FRAME_BYTES) })
    expect(fetcher.planeConnections).toBe(0)
    const got = await Promise.all(hashes.map(async (h) => await fetcher.fetch(h)))
    got.forEach((d, i) => { expect(Buffer.compare(d, blobs.get(hex(hashes[i]!))!)).toBe(0) })
    expect(streamWants()).toBeGreaterThan(0)
    fetcher.close()
  })
})

describe('the data plane against hostile connections', () => {
  /** A live grant, and what a real client's first want looks like on the wire. */
  async function granted (): Promise<{ grant: PlaneGrant, fetcher: BlobFetcher, hashes: Uint8Array[] }> {
    let grant: PlaneGrant | undefined
    const { fetcher, hashes } = await setUp(3, { dial: async (g) => { grant = g; return await dialPlane('127.0.0.1', g.ports[0]!, g, SYNC_MAX_FRAME_BYTES) } })
    return { grant: grant!, fetcher, hashes }
  }

  /** A hello and a sealed want, as a client with `key` would send them (the server's nonce is guessed: a replay). */
  function sealedWant (grant: PlaneGrant, key: Uint8Array, hashes: Uint8Array[], clientNonce = newPlaneNonce(), serverNonce = newPlaneNonce()): Uint8Array[] {
    const body = encode({ t: 'want', hashes: Buffer.concat(hashes) })
    const sealed = Buffer.concat(frameCipher(key, clientNonce, serverNonce, true).seal(body))
    const head = Buffer.alloc(4)
    head.writeUInt32BE(sealed.byteLength)
    return [Buffer.concat([PLANE_MAGIC, grant.ticket, clientNonce]), head, sealed]
  }

  it('closes a connection with an unknown ticket without a byte of answer', async () => {
    const { grant, fetcher } = await granted()
    const r = await answerTo(grant.ports[0]!, [Buffer.concat([PLANE_MAGIC, randomBytes(16), newPlaneNonce()])])
    expect(r).toEqual({ got: 0, closed: true })
    fetcher.close()
  })

  it('closes a connection that has the ticket but not the key: its want is never answered', async () => {
    const { grant, fetcher, hashes } = await granted()
    const r = await answerTo(grant.ports[0]!, sealedWant(grant, randomBytes(32), hashes))
    // the server's nonce (16 bytes) and nothing more
    expect(r).toEqual({ got: 16, closed: true })
    fetcher.close()
  })

  it('closes a replayed connection: the server\'s fresh nonce makes its frames fail', async () => {
    const { grant, fetcher, hashes } = await granted()
    // the right key, but frames sealed for another server nonce, as a recorded connection's
    const r = await answerTo(grant.ports[0]!, sealedWant(grant, grant.key, hashes))
    expect(r).toEqual({ got: 16, closed: true })
    fetcher.close()
  })

  it('refuses connections past the grant\'s cap, and a hello that never comes', async () => {
    const { grant, fetcher, hashes } = await granted()
    // the fetcher's own connection is one; fill the rest with real ones
    const extra = await Promise.all(Array.from({ length: MAX_PLANE_CONNECTIONS - 1 }, async () => await dialPlane('127.0.0.1', grant.ports[0]!, grant, SYNC_MAX_FRAME_BYTES)))
    await expect(dialPlane('127.0.0.1', grant.ports[0]!, grant, SYNC_MAX_FRAME_BYTES)).rejects.toMatchObject({ code: 'ERR_PEER_LOST' })
    // the connections it let in work
    await extra[0]!.send({ t: 'want', hashes: hashes[0]! })
    expect(await extra[0]!.recv()).toMatchObject({ t: 'blob' })
    for (const c of extra) c.destroy()
    // a connection that says nothing is closed after the hello timeout
    const silent = await answerTo(grant.ports[0]!, [], 15_000)
    expect(silent).toEqual({ got: 0, closed: true })
    fetcher.close()
  }, 30_000)
})

describe('a member whose data plane cannot be reached', () => {
  it('is pulled from over the stream for a while, then tried again', () => {
    let now = 1_000_000
    const down = new Unreachable(60_000, 2, () => now)
    expect(down.has('a')).toBe(false)
    down.note('a')
    now += 59_999
    expect(down.has('a')).toBe(true)
    now += 1
    expect(down.has('a')).toBe(false)
    // remembered at most `max`, the oldest forgotten first
    down.note('a')
    down.note('b')
    down.note('c')
    expect([down.has('a'), down.has('b'), down.has('c')]).toEqual([false, true, true])
  })
})
