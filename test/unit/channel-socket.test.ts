/**
 * The framing of socketChannel over a real socket: frames cut anywhere by the network (in
 * the length prefix, in the body, several in one read) arrive whole and in order, and a frame
 * past the limit ends the channel. With a cipher, frames travel in sealed records: those of
 * one turn together, and a record that does not add up ends the channel.
 */
import { afterEach, describe, expect, it } from 'vitest'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { encode } from 'cborg'
import { decodeBody, encodeFrame, MAX_RECORD_FRAMES, recordFrames, RECORD_FLUSH_BYTES, socketChannel, type FrameChannel, type FrameCipher, type SocketChannel } from '../../src/common/channel.js'
import { frameCipher, newPlaneNonce } from '../../src/fs-sync/plane/cipher.js'
import { ReadRing } from '../../src/common/read-ring.js'
import { readHello } from '../../src/fs-sync/plane/hello.js'

const cleanups: Array<() => void> = []
afterEach(() => { for (const c of cleanups.splice(0)) c() })

/** The two ends of a loopback connection: the one accepted, and the one that dialled. */
async function loopback (): Promise<{ socket: net.Socket, raw: net.Socket }> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  const raw = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  raw.setNoDelay(true)
  const socket = await accepted
  cleanups.push(() => { raw.destroy(); socket.destroy(); server.close() })
  return { socket, raw }
}

/** A channel reading one end of a loopback connection, and the other end raw. */
async function pair (maxFrameBytes?: number): Promise<{ channel: FrameChannel, raw: net.Socket }> {
  const { socket, raw } = await loopback()
  return { channel: socketChannel(socket, maxFrameBytes), raw }
}

/** Writes `bytes` in pieces of these sizes (cycled), each once the previous one has left. */
async function writeInPieces (raw: net.Socket, bytes: Uint8Array, sizes: number[]): Promise<void> {
  let off = 0
  for (let i = 0; off < bytes.byteLength; i++) {
    const n = sizes[i % sizes.length]!
    await new Promise<void>((resolve, reject) => raw.write(bytes.subarray(off, off + n), (err) => { if (err != null) reject(err); else resolve() }))
    // a turn of the loop, so that most pieces arrive as reads of their own
    await new Promise((resolve) => setTimeout(resolve, 1))
    off += n
  }
}

describe('socketChannel', () => {
  it('puts together frames the network cut anywhere, and splits frames that came together', async () => {
    const { channel, raw } = await pair()
    const messages: Array<{ t: string, n?: number, d?: Uint8Array }> = [
      { t: 'small', n: 1 },
      { t: 'blob', d: randomBytes(300 * 1024) },
      { t: 'empty', d: new Uint8Array(0) },
      { t: 'blob', d: randomBytes(70_000) },
      { t: 'last', n: 2 }
    ]
    const stream = Buffer.concat(messages.map((m) => encodeFrame(m)))
    // prefixes cut in two and in three, bodies cut small and large, frames sent together
    const writing = writeInPieces(raw, stream, [1, 3, 2, 5000, 65_536, 7, 200_000])
    for (const m of messages) {
      const got = await channel.recv() as Record<string, unknown>
      expect(got.t).toBe(m.t)
      if (m.d !== undefined) expect(Buffer.from(got.d as Uint8Array).equals(Buffer.from(m.d))).toBe(true)
      else expect(got.n).toBe(m.n)
    }
    await writing
    // and all in one write
    raw.write(stream)
    for (const m of messages) expect(((await channel.recv()) as { t: string }).t).toBe(m.t)
  })

  it('ends with an error at a prefix past the limit, before its body comes', async () => {
    const { channel, raw } = await pair(1024)
    const head = Buffer.alloc(4)
    head.writeUInt32BE(1025)
    raw.write(head)
    await expect(channel.recv()).rejects.toMatchObject({ code: 'ERR_MESSAGE_TOO_LARGE' })
  })
})

describe('socketChannel with a cipher (the data plane)', () => {
  const key = randomBytes(32)
  const [cn, sn] = [newPlaneNonce(), newPlaneNonce()]

  /** A sealing channel on one end; the other end raw, with the cipher that opens what it sends. */
  async function sealedPair (cap = 4 * 1024 * 1024): Promise<{ channel: SocketChannel, raw: net.Socket, opener: FrameCipher, sealer: FrameCipher }> {
    const { socket, raw } = await loopback()
    return { channel: socketChannel(socket, cap, frameCipher(key, cn, sn, false)), raw, opener: frameCipher(key, cn, sn, true), sealer: frameCipher(key, cn, sn, true) }
  }

  /** The records read from `raw` until `frames` frames came, each opened and split. */
  async function readRecords (raw: net.Socket, opener: FrameCipher, frames: number): Promise<unknown[][]> {
    const records: unknown[][] = []
    let buf = Buffer.alloc(0)
    let got = 0
    for await (const chunk of raw) {
      buf = Buffer.concat([buf, chunk as Buffer])
      while (buf.byteLength >= 4 && buf.byteLength >= 4 + buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0)
        const inner = recordFrames(opener.open(buf.subarray(4, 4 + len))).map((f) => decodeBody(f))
        records.push(inner)
        got += inner.length
        buf = buf.subarray(4 + len)
      }
      if (got >= frames) return records
    }
    return records
  }

  it('seals the frames sent in one turn together, and a record once it holds RECORD_FLUSH_BYTES', async () => {
    const { channel, raw, opener } = await sealedPair()
    const reading = readRecords(raw, opener, 103)
    for (let i = 0; i < 100; i++) await channel.send({ t: 'small', n: i })
    // the next turn: three frames of 60% of a record each
    await new Promise((resolve) => setImmediate(resolve))
    const big = Math.floor(RECORD_FLUSH_BYTES * 0.6)
    for (let i = 0; i < 3; i++) await channel.sendPieces([Buffer.from(encode({ t: 'big', d: new Uint8Array(big).fill(i) }))])
    const records = await reading
    expect(records.map((r) => r.length)).toEqual([100, 2, 1])
    expect(records[0]!.map((m) => (m as { n: number }).n)).toEqual([...Array(100).keys()])
    expect(records.slice(1).flat().map((m) => (m as { d: Uint8Array }).d[0])).toEqual([0, 1, 2])
  })

  it('carries messages both ways between two sealing ends, in order and whole', async () => {
    const { socket, raw } = await loopback()
    const a = socketChannel(socket, 4 * 1024 * 1024, frameCipher(key, cn, sn, false))
    const b = socketChannel(raw, 4 * 1024 * 1024, frameCipher(key, cn, sn, true))
    const sizes = [0, 1, 100, 70_000, 300 * 1024, 5, 1024 * 1024, 17]
    const blobs = sizes.map((n) => randomBytes(n))
    const sending = (async () => { for (const d of blobs) await a.sendPieces([Buffer.from(encode({ t: 'blob', d }))]) })()
    for (const d of blobs) expect(Buffer.from((await b.recv() as { d: Uint8Array }).d).equals(d)).toBe(true)
    await sending
    await b.send({ t: 'back' })
    await b.close()
    expect(await a.recv()).toEqual({ t: 'back' })
    expect(await a.recv()).toBeUndefined()
  })

  it('refuses to send a frame that cannot fit in a record, and sends nothing of it', async () => {
    const { channel, raw, opener } = await sealedPair(64 * 1024)
    await expect(channel.send({ t: 'big', d: new Uint8Array(64 * 1024) })).rejects.toMatchObject({ code: 'ERR_MESSAGE_TOO_LARGE' })
    const reading = readRecords(raw, opener, 1)
    await channel.send({ t: 'after' })
    expect(await reading).toEqual([[{ t: 'after' }]])
  })

  it('seals a record once it holds MAX_RECORD_FRAMES, and refuses one that holds more', async () => {
    const { channel, raw, opener, sealer } = await sealedPair()
    const reading = readRecords(raw, opener, MAX_RECORD_FRAMES + 5)
    for (let i = 0; i < MAX_RECORD_FRAMES + 5; i++) await channel.send(i)
    expect((await reading).map((r) => r.length)).toEqual([MAX_RECORD_FRAMES, 5])
    // a peer's record of empty frames, one past the cap
    const other = await sealedPair()
    const sealed = Buffer.concat(sealer.seal(Buffer.alloc(4 * (MAX_RECORD_FRAMES + 1))))
    const head = Buffer.alloc(4)
    head.writeUInt32BE(sealed.byteLength)
    other.raw.write(Buffer.concat([head, sealed]))
    await expect(other.channel.recv()).rejects.toMatchObject({ code: 'ERR_BAD_MESSAGE', message: expect.stringContaining('frames') })
  })

  it.each([
    ['no frame', Buffer.alloc(0)],
    ['a record ending inside a length', Buffer.from([0, 0, 0, 1, 0xf6, 0, 0])],
    ['a frame longer than what is left', Buffer.from([0, 0, 0, 1, 0xf6, 0, 0, 0, 9, 0xf6])]
  ])('ends the channel on a sealed record holding %s', async (_what, plain) => {
    const { channel, raw, sealer } = await sealedPair()
    const sealed = Buffer.concat(sealer.seal(plain))
    const head = Buffer.alloc(4)
    head.writeUInt32BE(sealed.byteLength)
    raw.write(Buffer.concat([head, sealed]))
    await expect(channel.recv()).rejects.toMatchObject({ code: 'ERR_BAD_MESSAGE' })
  })
})

describe('socketChannel reading through a ReadRing (the data plane puller)', () => {
  const key = randomBytes(32)
  const [cn, sn] = [newPlaneNonce(), newPlaneNonce()]

  /** A client end whose reads land in a ring of `size` bytes, and the accepted end raw. */
  async function ringPair (size: number): Promise<{ ring: ReadRing, client: net.Socket, raw: net.Socket }> {
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
    const ring = new ReadRing(size)
    const client = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', onread: ring.onread })
    const raw = await accepted
    raw.setNoDelay(true)
    cleanups.push(() => { raw.destroy(); client.destroy(); server.close() })
    return { ring, client, raw }
  }

  /** Each message sealed in a record of its own by the server's cipher, as the wire carries them. */
  function sealedRecords (messages: unknown[], sealer = frameCipher(key, cn, sn, false)): Buffer {
    return Buffer.concat(messages.map((m) => {
      const sealed = Buffer.concat(sealer.seal(encodeFrame(m)))
      const head = Buffer.alloc(4)
      head.writeUInt32BE(sealed.byteLength)
      return Buffer.concat([head, sealed])
    }))
  }

  it('opens records cut anywhere, grows for a record bigger than itself, and keeps what came behind the hello', async () => {
    const { ring, client, raw } = await ringPair(128 * 1024)
    const blobs = [0, 1, 100, 70_000, 300 * 1024, 5, 200_000, 17].map((n) => randomBytes(n))
    const hello = randomBytes(16)
    const sealer = frameCipher(key, cn, sn, false)
    const stream = Buffer.concat([hello, sealedRecords(blobs.map((d) => ({ t: 'blob', d })), sealer)])
    // the hello and the start of the first record in one read, then pieces of every size
    raw.write(stream.subarray(0, 40))
    expect((await readHello(ring, client, 16, 5_000)).equals(hello)).toBe(true)
    const channel = socketChannel(client, 4 * 1024 * 1024, frameCipher(key, cn, sn, true), decodeBody, ring)
    const writing = writeInPieces(raw, stream.subarray(40), [1, 3, 2, 5000, 65_536, 7, 200_000])
    for (const d of blobs) expect(Buffer.from((await channel.recv() as { d: Uint8Array }).d).equals(d)).toBe(true)
    await writing
    // and many records in one write, read after the ring grew
    const more = blobs.map((d) => ({ t: 'again', d }))
    raw.write(sealedRecords(more, sealer))
    for (const d of blobs) expect(Buffer.from((await channel.recv() as { d: Uint8Array }).d).equals(d)).toBe(true)
  })

  it('ends with an error when the connection ends inside a record, and refuses a record past the cap before it comes', async () => {
    const cut = await ringPair(64 * 1024)
    cut.raw.write(Buffer.concat([randomBytes(16), sealedRecords([{ t: 'blob', d: randomBytes(1000) }]).subarray(0, 500)]))
    await readHello(cut.ring, cut.client, 16, 5_000)
    const channel = socketChannel(cut.client, 4 * 1024 * 1024, frameCipher(key, cn, sn, true), decodeBody, cut.ring)
    cut.raw.end()
    await expect(channel.recv()).rejects.toMatchObject({ code: 'ERR_BAD_MESSAGE', message: expect.stringContaining('inside a frame') })

    const big = await ringPair(64 * 1024)
    const head = Buffer.alloc(4)
    head.writeUInt32BE(1024 * 1024 + 1)
    big.raw.write(Buffer.concat([randomBytes(16), head]))
    await readHello(big.ring, big.client, 16, 5_000)
    const capped = socketChannel(big.client, 1024 * 1024, frameCipher(key, cn, sn, true), decodeBody, big.ring)
    await expect(capped.recv()).rejects.toMatchObject({ code: 'ERR_MESSAGE_TOO_LARGE' })
  })

  it('reports a connection closed before the hello, and takes no ring without a cipher', async () => {
    const { ring, client, raw } = await ringPair(64 * 1024)
    raw.end(Buffer.from('short'))
    await expect(readHello(ring, client, 16, 5_000)).rejects.toMatchObject({ code: 'ERR_PEER_LOST' })
    expect(() => socketChannel(client, 1024, undefined, decodeBody, ring)).toThrow(expect.objectContaining({ code: 'ERR_INTERNAL' }))
  })
})
