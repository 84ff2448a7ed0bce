/**
 * The framing of socketChannel over a real socket: frames cut anywhere by the network (in
 * the length prefix, in the body, several in one read) arrive whole and in order, and a frame
 * past the limit ends the channel.
 */
import { afterEach, describe, expect, it } from 'vitest'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { encodeFrame, socketChannel, type FrameChannel } from '../../src/common/channel.js'

const cleanups: Array<() => void> = []
afterEach(() => { for (const c of cleanups.splice(0)) c() })

/** A channel reading one end of a loopback connection, and the other end raw. */
async function pair (maxFrameBytes?: number): Promise<{ channel: FrameChannel, raw: net.Socket }> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  const raw = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  raw.setNoDelay(true)
  const socket = await accepted
  cleanups.push(() => { raw.destroy(); socket.destroy(); server.close() })
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
