/**
 * The ceiling under a sync: one libp2p stream between two processes on loopback, with the
 * grid's own stack (TCP, pnet, noise, yamux), carrying nothing but bytes. A workspace sync
 * rides on such a stream and also hashes, stores and writes what arrives, so it cannot beat
 * this figure on the same machine; it is measured in the same run to judge the sync's.
 *
 *   node dist/bench/transport.js --sink   (the child: prints its address, counts what it gets)
 */
import '../src/common/polyfill.js'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { startNode } from '../src/grid/node.js'
import { createSwarmKey } from '../src/grid/swarm-key.js'
import type { Figure } from './grid-vrun.js'

const PROTOCOL = '/vgrid-bench/sink/1.0.0'
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
  process.stdout.write(`${n.getMultiaddrs()[0]!.toString()}\n`)
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
  try {
    const addr = await new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve(out.trim()) })
      child.once('exit', (code) => { reject(new Error(`the sink exited (${code})`)) })
    })
    const conn = await me.dial(multiaddr(addr))
    const once = async (): Promise<number> => {
      const stream = await conn.newStream(PROTOCOL)
      const answer = new Promise<bigint>((resolve) => stream.addEventListener('message', (evt) => { resolve(Buffer.from(evt.data.subarray()).readBigUInt64BE(0)) }, { once: true }))
      const t0 = performance.now()
      await sendAll(stream, BYTES)
      const got = await answer
      const ms = performance.now() - t0
      if (got !== BigInt(BYTES)) throw new Error(`the sink got ${got} bytes of ${BYTES}`)
      return BYTES / MB / (ms / 1000)
    }
    await once() // warm up
    const rates = [await once(), await once()]
    return [{ name: 'one libp2p stream (tcp+pnet+noise+yamux), process to process, best of 2', value: Math.round(Math.max(...rates)), unit: 'MB/s' }]
  } finally {
    child.kill()
    await me.stop()
  }
}

if (process.argv[2] === '--sink') {
  sink(process.argv[3]!).catch((err) => { console.error(err); process.exit(1) })
}
