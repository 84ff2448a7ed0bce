/**
 * The ceiling under a sync, two figures on one libp2p stream between two processes on
 * loopback, with the grid's own stack (TCP, noise with the swarm key, yamux):
 * - the stream carrying nothing but bytes;
 * - the least a first sync of big files must do on top: the sender reads two 300 MB files,
 *   cuts them with FastCDC and names each chunk by its SHA-256 (one pass, no scan before),
 *   the receiver checks each chunk's hash and writes the files once (no store, no manifest,
 *   no protocol beyond length + hash + bytes).
 * A workspace sync does all of the second and more, so it cannot beat either figure on the
 * same machine; they are measured in the same run to judge the sync's.
 *
 *   node dist/bench/transport.js --sink KEY   (the child: prints its address, takes streams)
 */
import '../src/common/polyfill.js'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { startNode } from '../src/grid/node.js'
import { createSwarmKey } from '../src/grid/swarm-key.js'
import { cdcConfig, DEFAULT_CDC } from '../src/fs-sync/gear.js'
import { cutSourceAsync } from '../src/fs-sync/cut-window.js'
import { randomFile } from './files.js'
import type { Figure } from './grid-vrun.js'

const PROTOCOL = '/vgrid-bench/sink/1.0.0'
const FILES_PROTOCOL = '/vgrid-bench/files/1.0.0'
const FILE_BYTES = 300 * 1e6
/** A frame: chunk length (4 bytes), its SHA-256, the chunk. */
const FRAME_HEAD = 4 + 32
const WRITE_COALESCE = 1024 * 1024
const BYTES = 512 * 2 ** 20
const WRITE_BYTES = 256 * 1024
const MB = 1e6

async function node (swarmKey: Uint8Array): Promise<Awaited<ReturnType<typeof startNode>>> {
  return await startNode({ privateKey: await generateKeyPair('Ed25519'), swarmKey, listen: ['/ip4/127.0.0.1/tcp/0'], version: 'bench' })
}

/** The child: counts the bytes of each stream and answers with the count (8 bytes). */
async function sink (keyHex: string): Promise<void> {
  const n = await node(Uint8Array.from(Buffer.from(keyHex, 'hex')))
  await n.handle(PROTOCOL, (stream: Stream) => {
    let got = 0
    stream.addEventListener('message', (evt) => { got += evt.data.byteLength })
    stream.addEventListener('remoteCloseWrite', () => {
      const b = Buffer.alloc(8)
      b.writeBigUInt64BE(BigInt(got))
      stream.send(b)
      void stream.close()
    })
  })
  await n.handle(FILES_PROTOCOL, (stream: Stream) => { receiveFiles(stream) })
  process.stdout.write(`${n.getMultiaddrs()[0]!.toString()}\n`)
}

/**
 * The receiving half of the floor: frames in, each chunk's hash checked, bytes written in
 * 1 MiB writes to one file per stream (removed at the end); answers with the bytes written.
 */
function receiveFiles (stream: Stream): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-floor-'))
  const fd = fs.openSync(path.join(dir, 'out'), 'w')
  let pending: Buffer = Buffer.alloc(0)
  let out: Buffer[] = []
  let outBytes = 0
  let written = 0
  let bad = false
  const flush = (): void => {
    for (const b of out) written += fs.writeSync(fd, b)
    out = []
    outBytes = 0
  }
  stream.addEventListener('message', (evt) => {
    const data = evt.data.subarray()
    pending = pending.length === 0 ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.concat([pending, data])
    let at = 0
    while (pending.length - at >= FRAME_HEAD) {
      const len = pending.readUInt32BE(at)
      if (pending.length - at < FRAME_HEAD + len) break
      const chunk = pending.subarray(at + FRAME_HEAD, at + FRAME_HEAD + len)
      if (!createHash('sha256').update(chunk).digest().equals(pending.subarray(at + 4, at + FRAME_HEAD))) bad = true
      out.push(chunk)
      outBytes += len
      at += FRAME_HEAD + len
      if (outBytes >= WRITE_COALESCE) flush()
    }
    pending = pending.subarray(at)
  })
  stream.addEventListener('remoteCloseWrite', () => {
    flush()
    fs.closeSync(fd)
    fs.rmSync(dir, { recursive: true, force: true })
    const b = Buffer.alloc(8)
    b.writeBigUInt64BE(bad ? 0n : BigInt(written))
    stream.send(b)
    void stream.close()
  })
}

/** The sending half: one pass over each file, cut, hashed and framed as it is read. */
async function sendFiles (stream: Stream, files: string[]): Promise<void> {
  const cfg = cdcConfig(DEFAULT_CDC)
  let draining: Promise<unknown> | undefined
  for (const file of files) {
    const fh = await fs.promises.open(file, 'r')
    try {
      await cutSourceAsync(async (buf, at, len) => {
        if (draining !== undefined) { await draining; draining = undefined }
        return (await fh.read(buf, at, len, null)).bytesRead
      }, cfg, (buf, start, length) => {
        const frame = Buffer.allocUnsafe(FRAME_HEAD + length)
        frame.writeUInt32BE(length, 0)
        createHash('sha256').update(buf.subarray(start, start + length)).digest().copy(frame, 4)
        frame.set(buf.subarray(start, start + length), FRAME_HEAD)
        if (!stream.send(frame) && draining === undefined) {
          draining = new Promise((resolve) => stream.addEventListener('drain', resolve, { once: true }))
        }
      })
    } finally {
      await fh.close()
    }
  }
  if (draining !== undefined) await draining
  void stream.close().catch(() => {})
}

async function sendAll (stream: Stream, bytes: number): Promise<void> {
  const buf = new Uint8Array(WRITE_BYTES).fill(0x5a)
  for (let sent = 0; sent < bytes; sent += WRITE_BYTES) {
    if (!stream.send(buf)) await new Promise((resolve) => stream.addEventListener('drain', resolve, { once: true }))
  }
  void stream.close().catch(() => {}) // our end: the sink answers when it sees it
}

export async function benchTransport (): Promise<Figure[]> {
  const key = createSwarmKey()
  const child = spawn(process.execPath, ['--max-semi-space-size=4', fileURLToPath(import.meta.url), '--sink', Buffer.from(key).toString('hex')], { stdio: ['ignore', 'pipe', 'inherit'] })
  const me = await node(key)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-bench-files-'))
  try {
    const addr = await new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve(out.trim()) })
      child.once('exit', (code) => { reject(new Error(`the sink exited (${code})`)) })
    })
    const conn = await me.dial(multiaddr(addr))
    /** MB/s of one stream of `protocol` that `send` fills with `bytes`, which the other end counts back. */
    const rate = async (protocol: string, bytes: number, send: (stream: Stream) => Promise<void>): Promise<number> => {
      const stream = await conn.newStream(protocol)
      const answer = new Promise<bigint>((resolve) => stream.addEventListener('message', (evt) => { resolve(Buffer.from(evt.data.subarray()).readBigUInt64BE(0)) }, { once: true }))
      const t0 = performance.now()
      await send(stream)
      const got = await answer
      const ms = performance.now() - t0
      if (got !== BigInt(bytes)) throw new Error(`the other end counted ${got} bytes of ${bytes} (0: a hash did not match)`)
      return bytes / MB / (ms / 1000)
    }
    const once = async (): Promise<number> => await rate(PROTOCOL, BYTES, async (s) => { await sendAll(s, BYTES) })
    await once() // warm up
    const rates = [await once(), await once()]
    // The floor of a first sync, on files written just before (in the page cache, as the
    // sync bench's are).
    const files = [path.join(dir, 'big-a.bin'), path.join(dir, 'big-b.bin')]
    for (const f of files) randomFile(f, FILE_BYTES)
    const filesOnce = async (): Promise<number> => await rate(FILES_PROTOCOL, files.length * FILE_BYTES, async (s) => { await sendFiles(s, files) })
    const fileRates = [await filesOnce(), await filesOnce()]
    return [
      { name: 'one libp2p stream (tcp+noise+yamux), process to process, best of 2', value: Math.round(Math.max(...rates)), unit: 'MB/s' },
      { name: 'the same stream carrying two 300 MB files: FastCDC + SHA-256 sent, checked, written once; best of 2', value: Math.round(Math.max(...fileRates)), unit: 'MB/s' }
    ]
  } finally {
    child.kill()
    await me.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[2] === '--sink') {
  sink(process.argv[3]!).catch((err) => { console.error(err); process.exit(1) })
}
