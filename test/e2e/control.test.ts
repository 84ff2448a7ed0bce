/**
 * The control socket under bad input: whatever a local client sends, the agent refuses it
 * with a reason, logs it, and keeps serving the real CLI.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import net from 'node:net'
import path from 'node:path'
import { startAgent, stopAll, waitFor, tempDir, runCli, type AgentProc } from '../helpers/procs.js'
import { encodeFrame, socketChannel } from '../../src/common/channel.js'
import { call } from '../../src/agent/control/client.js'
import fs from 'node:fs'

let a: AgentProc

beforeAll(async () => { a = await startAgent() }, 30_000)
afterAll(async () => { await stopAll() })

async function rawExchange (chunks: Uint8Array[]): Promise<unknown[]> {
  const sock = net.connect(path.join(a.home, 'agent.sock'))
  await new Promise((resolve) => sock.once('connect', resolve))
  const ch = socketChannel(sock)
  for (const c of chunks) sock.write(c)
  const replies: unknown[] = []
  for (;;) {
    const m = await ch.recv().catch(() => undefined)
    if (m === undefined) break
    replies.push(m)
  }
  sock.destroy()
  return replies
}

async function stillServes (): Promise<void> {
  const r = await a.vgrid(['status', '--json'])
  expect(r.code).toBe(0)
  expect(JSON.parse(r.stdout).status.peer).toBe(a.peer)
}

describe('control socket', () => {
  it('refuses a frame that is not CBOR', async () => {
    const garbage = Buffer.from([0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff])
    expect(await rawExchange([garbage])).toEqual([])
    await stillServes()
  })

  it('refuses a frame past the size limit without reading it', async () => {
    const huge = Buffer.alloc(4)
    huge.writeUInt32BE(0xfffffff0)
    expect(await rawExchange([huge])).toEqual([])
    await stillServes()
    await waitFor(() => /past the limit/.test(a.output()), 'the refusal to be logged')
  })

  it('answers another protocol version with ERR_AGENT_VERSION', async () => {
    const replies = await rawExchange([encodeFrame({ t: 'hello', v: 99, client: 'test' })])
    expect(replies).toMatchObject([{ t: 'error', error: { code: 'ERR_AGENT_VERSION' } }])
    await stillServes()
  })

  it('refuses malformed requests with ERR_BAD_MESSAGE', async () => {
    const hello = encodeFrame({ t: 'hello', v: 1, client: 'test' })
    for (const req of [
      { t: 'run', spec: { argv: 42 } },
      { t: 'run', spec: { argv: [] } },
      { t: 'run', spec: { argv: ['true'], cpus: -1 } },
      { t: 'run', spec: { argv: ['true'], env: { A: 1 } } },
      { t: 'explode' },
      [1, 2, 3],
      'hello'
    ]) {
      const replies = await rawExchange([hello, encodeFrame(req)])
      expect(replies[0]).toMatchObject({ t: 'hello' })
      expect(replies[1]).toMatchObject({ t: 'error', error: { code: 'ERR_BAD_MESSAGE' } })
    }
    await stillServes()
  })

  it('refuses input that is not an exec input in the middle of a run', async () => {
    const hello = encodeFrame({ t: 'hello', v: 1, client: 'test' })
    const run = encodeFrame({ t: 'run', spec: { argv: ['sleep', '30'], env: {}, cpus: 1, gpus: 0 }, on: a.peer })
    const bogus = encodeFrame({ t: 'stdin', data: 'not bytes' })
    const replies = await rawExchange([hello, run, bogus])
    expect(replies[0]).toMatchObject({ t: 'hello' })
    expect(replies.some((r: any) => r.t === 'exit' || r.t === 'error')).toBe(true)
    await stillServes()
  })

  it('tells the user how to start an agent when none runs', async () => {
    const home = tempDir()
    for (const args of [['peers'], ['status'], ['join-token']]) {
      const r = await runCli('vgrid', args, { home })
      expect(r.code).toBe(255)
      expect(r.stderr).toMatch(/no vgrid agent is running/)
      expect(r.stderr).toMatch(/vgrid agent/)
    }
    const r = await runCli('vrun', ['echo', 'hi'], { home })
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/no vgrid agent is running/)
  })

  it('names the dashboard in its very first status, not only once the HTTP server is up', async () => {
    // Asked in a loop from the moment the socket appears: a status answered before the HTTP
    // server listened had no `http`, and a script (or a test) reading it found none.
    const home = tempDir()
    const b = startAgent({ home })
    try {
      const first = await waitFor(async () => {
        if (!fs.existsSync(path.join(home, 'agent.sock'))) return undefined
        return await call(home, { t: 'status' }, { timeoutMs: 10_000 }).catch(() => undefined)
      }, 'the agent to answer', 60_000, 1)
      expect(first.status.http).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    } finally {
      await (await b).stop()
    }
  })
})
