/** The framing under every grid channel: unsigned-varint length, then the body. */
import { describe, expect, it } from 'vitest'
import { encode } from 'cborg'
import { encodeVarint, FrameReader } from '../../src/grid/stream-channel.js'
import { decodeBody } from '../../src/common/channel.js'
import { VgridError } from '../../src/common/errors.js'

function frame (body: Uint8Array): Uint8Array {
  const prefix = encodeVarint(body.byteLength)
  const out = new Uint8Array(prefix.byteLength + body.byteLength)
  out.set(prefix)
  out.set(body, prefix.byteLength)
  return out
}

describe('FrameReader', () => {
  it('encodes lengths as unsigned varints', () => {
    expect([...encodeVarint(0)]).toEqual([0])
    expect([...encodeVarint(127)]).toEqual([127])
    expect([...encodeVarint(128)]).toEqual([0x80, 0x01])
    expect([...encodeVarint(300)]).toEqual([0xac, 0x02])
  })

  it('cuts frames delivered one byte at a time, and many in one chunk', () => {
    const bodies = [new Uint8Array(0), Uint8Array.from([1, 2, 3]), new Uint8Array(200).fill(7), new Uint8Array(70_000).fill(9)]
    const all = bodies.map(frame)
    const bytes = new Uint8Array(all.reduce((n, f) => n + f.byteLength, 0))
    let off = 0
    for (const f of all) { bytes.set(f, off); off += f.byteLength }

    const slow = new FrameReader(1 << 20)
    const out: Uint8Array[] = []
    for (const b of bytes) {
      slow.push(Uint8Array.of(b))
      for (let m = slow.next(); m !== undefined; m = slow.next()) out.push(m)
    }
    expect(out).toEqual(bodies)

    const fast = new FrameReader(1 << 20)
    fast.push(bytes)
    const out2: Uint8Array[] = []
    for (let m = fast.next(); m !== undefined; m = fast.next()) out2.push(m)
    expect(out2).toEqual(bodies)
    expect(fast.buffered).toBe(0)
  })

  it('refuses an oversized frame from its prefix, before buffering the body', () => {
    const r = new FrameReader(1000)
    r.push(encodeVarint(1001))
    expect(() => r.next()).toThrow(expect.objectContaining({ code: 'ERR_MESSAGE_TOO_LARGE' }))
    // even a prefix cut short already past the cap is refused
    const r2 = new FrameReader(1000)
    r2.push(Uint8Array.of(0xff, 0xff))
    expect(() => r2.next()).toThrow(expect.objectContaining({ code: 'ERR_MESSAGE_TOO_LARGE' }))
  })

  it('refuses an overlong prefix', () => {
    const r = new FrameReader(Number.MAX_SAFE_INTEGER)
    r.push(new Uint8Array(9).fill(0x80))
    expect(() => r.next()).toThrow(expect.objectContaining({ code: 'ERR_BAD_MESSAGE' }))
  })
})

describe('decodeBody', () => {
  it('hands long byte strings out as views of the frame, short ones as copies, both exact', () => {
    const big = new Uint8Array(70_000).map((_, i) => i % 251)
    const mid = new Uint8Array(5000).fill(3)
    const small = Uint8Array.of(1, 2, 3)
    const body = encode({ t: 'blob', d: big, m: mid, s: small, n: [mid] })
    const msg = decodeBody(body) as { d: Uint8Array, m: Uint8Array, s: Uint8Array, n: Uint8Array[] }
    expect(msg.d).toEqual(big)
    expect(msg.m).toEqual(mid)
    expect(msg.n[0]).toEqual(mid)
    expect(msg.s).toEqual(small)
    expect(msg.d.buffer).toBe(body.buffer)
    expect(msg.s.buffer).not.toBe(body.buffer)
  })

  it('refuses a byte string longer than its frame, and bytes after the message', () => {
    const body = encode({ d: new Uint8Array(10_000) })
    expect(() => decodeBody(body.subarray(0, body.byteLength - 1))).toThrow(VgridError)
    const extra = new Uint8Array(body.byteLength + 1)
    extra.set(body)
    expect(() => decodeBody(extra)).toThrow(/malformed/)
  })
})
