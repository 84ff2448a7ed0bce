/**
 * vrun's session and the control client against a scripted fake agent on a real Unix socket:
 * what reaches the terminal, what reaches the agent, and the exit status, without libp2p.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { socketChannel, type FrameChannel } from '../../src/common/channel.js'
import { VgridError } from '../../src/common/errors.js'
import { CONTROL_VERSION } from '../../src/protocol/control.js'
import { connectAgent, request } from '../../src/agent/control/client.js'
import { runVrun, type VrunIo } from '../../src/cli/vrun-session.js'
import type { RunSpec } from '../../src/protocol/session.js'

type Script = (channel: FrameChannel, req: Record<string, unknown>) => Promise<void>

let home: string
let server: net.Server | undefined

beforeEach(() => { home = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-vrun-')) })
afterEach(async () => {
  await new Promise<void>((resolve) => { if (server === undefined) resolve(); else server.close(() => { resolve() }) })
  server = undefined
  fs.rmSync(home, { recursive: true, force: true })
})

/** A fake agent that answers the hello, then hands the request to `script`. */
async function fakeAgent (script: Script, helloVersion = CONTROL_VERSION): Promise<void> {
  server = net.createServer((socket) => {
    const channel = socketChannel(socket)
    void (async () => {
      const hello = await channel.recv() as Record<string, unknown>
      expect(hello).toMatchObject({ t: 'hello', v: CONTROL_VERSION })
      await channel.send({ t: 'hello', v: helloVersion, peer: '12D3KooWFakeAgentPeerId' })
      const req = await channel.recv() as Record<string, unknown> | undefined
      if (req !== undefined) await script(channel, req)
    })().catch(() => { channel.destroy() })
  })
  await new Promise<void>((resolve) => { server!.listen(path.join(home, 'agent.sock'), resolve) })
}

class Sink extends Writable {
  chunks: Buffer[] = []
  /** Called on each write: lets a test act once vrun has written something. */
  onWrite?: () => void
  isTTY?: boolean
  columns?: number
  rows?: number
  constructor (private readonly delayMs = 0, highWaterMark = 16 * 1024) { super({ highWaterMark }) }
  override _write (chunk: Buffer, _enc: string, cb: () => void): void {
    this.chunks.push(chunk)
    this.onWrite?.()
    if (this.delayMs > 0) setTimeout(cb, this.delayMs)
    else cb()
  }

  get text (): string { return Buffer.concat(this.chunks).toString() }
}

function io (over: Partial<VrunIo> = {}): VrunIo & { stdout: Sink, stderr: Sink, stdin: PassThrough, signals: EventEmitter } {
  return { home, env: {}, stdin: new PassThrough(), stdout: new Sink(), stderr: new Sink(), signals: new EventEmitter(), ...over } as never
}

const spec = (argv: string[]): RunSpec => ({ argv, env: {}, cpus: 1, gpus: 0 })
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const started = { t: 'started', pid: 42, peer: '12D3KooWFakeAgentPeerId', host: 'fake', gpus: [] }

/** Reads inputs until eof or the end; returns them. */
async function readInputs (channel: FrameChannel, until: (m: Record<string, unknown>) => boolean): Promise<Array<Record<string, unknown>>> {
  const seen: Array<Record<string, unknown>> = []
  for (;;) {
    const m = await channel.recv() as Record<string, unknown> | undefined
    if (m === undefined) return seen
    seen.push(m)
    if (until(m)) return seen
  }
}

describe('vrun session', () => {
  it('sends the run, writes output to fd 1 and 2, and exits with the remote code', async () => {
    let got: Record<string, unknown> | undefined
    await fakeAgent(async (ch, req) => {
      got = req
      await ch.send({ t: 'placed', peer: '12D3KooWRemotePeer', host: 'lab-2', local: false })
      await ch.send(started)
      await ch.send({ t: 'out', fd: 1, data: bytes('hello ') })
      await ch.send({ t: 'out', fd: 2, data: bytes('oops\n') })
      await ch.send({ t: 'out', fd: 1, data: bytes('world\n') })
      await ch.send({ t: 'exit', code: 3 })
    })
    const t = io()
    const code = await runVrun({ spec: spec(['sh', '-c', 'x']), on: 'lab-2', tty: 'no' }, t)
    expect(code).toBe(3)
    expect(t.stdout.text).toBe('hello world\n')
    expect(t.stderr.text).toBe('oops\n')
    expect(got).toEqual({ t: 'run', spec: spec(['sh', '-c', 'x']), on: 'lab-2' })
  })

  it('inside a task, names it as the parent of the run', async () => {
    let got: Record<string, unknown> | undefined
    await fakeAgent(async (ch, req) => {
      got = req
      await ch.send(started)
      await ch.send({ t: 'exit', code: 0 })
    })
    expect(await runVrun({ spec: spec(['true']), tty: 'no', parent: '0123456789abcdef' }, io())).toBe(0)
    expect(got).toEqual({ t: 'run', spec: spec(['true']), parent: '0123456789abcdef' })
  })

  it('says where it runs only with VGRID_VERBOSE=1', async () => {
    await fakeAgent(async (ch) => {
      await ch.send({ t: 'placed', peer: '12D3KooWRemotePeerXYZ', host: 'lab-2', local: false })
      await ch.send(started)
      await ch.send({ t: 'exit', code: 0 })
    })
    const t = io({ env: { VGRID_VERBOSE: '1' } })
    expect(await runVrun({ spec: spec(['true']), tty: 'no' }, t)).toBe(0)
    expect(t.stderr.text).toBe('vrun: running on lab-2 (…eerXYZ)\n')
  })

  it('forwards stdin in order and eof at its end', async () => {
    let inputs: Array<Record<string, unknown>> = []
    await fakeAgent(async (ch) => {
      await ch.send(started)
      inputs = await readInputs(ch, (m) => m.t === 'eof')
      await ch.send({ t: 'exit', code: 0 })
    })
    const t = io()
    const big = Buffer.alloc(3 * 1024 * 1024 + 5, 7)
    const done = runVrun({ spec: spec(['cat']), tty: 'no' }, t)
    t.stdin.write('line 1\n')
    t.stdin.write(big)
    t.stdin.end('last')
    expect(await done).toBe(0)
    const data = Buffer.concat(inputs.filter((m) => m.t === 'stdin').map((m) => Buffer.from(m.data as Uint8Array)))
    expect(data.equals(Buffer.concat([Buffer.from('line 1\n'), big, Buffer.from('last')]))).toBe(true)
    expect(inputs.every((m) => m.t !== 'stdin' || (m.data as Uint8Array).byteLength <= 1024 * 1024)).toBe(true)
    expect(inputs.at(-1)).toEqual({ t: 'eof' })
  })

  it('keeps every byte in order when stdout is slow (backpressure)', async () => {
    const chunk = Buffer.alloc(64 * 1024)
    const CHUNKS = 100
    await fakeAgent(async (ch) => {
      await ch.send(started)
      for (let i = 0; i < CHUNKS; i++) await ch.send({ t: 'out', fd: 1, data: chunk.fill(i % 251) })
      await ch.send({ t: 'exit', code: 0 })
    })
    const t = io({ stdout: new Sink(1, 16 * 1024) })
    expect(await runVrun({ spec: spec(['yes']), tty: 'no' }, t)).toBe(0)
    const out = Buffer.concat(t.stdout.chunks)
    expect(out.byteLength).toBe(CHUNKS * chunk.byteLength)
    for (let i = 0; i < CHUNKS; i++) expect(out[i * chunk.byteLength]).toBe(i % 251)
  })

  it('stops reading the agent while stdout does not drain', async () => {
    let sent = 0
    const CHUNKS = 1000
    await fakeAgent(async (ch) => {
      await ch.send(started)
      for (; sent < CHUNKS; sent++) await ch.send({ t: 'out', fd: 1, data: new Uint8Array(64 * 1024) })
      await ch.send({ t: 'exit', code: 0 })
    })
    let release: (() => void) | undefined
    const stuck = new Writable({ highWaterMark: 1024, write (_c, _e, cb) { release = cb } })
    const done = runVrun({ spec: spec(['yes']), tty: 'no' }, io({ stdout: stuck as never }))
    await new Promise((resolve) => setTimeout(resolve, 300))
    // the channel's own queue (64 messages) and the socket buffers, then the agent must wait
    expect(sent).toBeLessThan(120)
    stuck._write = (_c, _e, cb) => { cb() }
    release!()
    expect(await done).toBe(0)
    expect(sent).toBe(CHUNKS)
  })

  it('throws the agent\'s error with its hint (exit 255 in the CLI)', async () => {
    await fakeAgent(async (ch) => {
      await ch.send({ t: 'error', error: { code: 'ERR_IMPOSSIBLE_REQUEST', message: 'no member has 4 GPUs', hint: 'the grid has 2 GPUs at most' } })
    })
    const err = await runVrun({ spec: spec(['x']), tty: 'no' }, io()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(VgridError)
    expect(err).toMatchObject({ code: 'ERR_IMPOSSIBLE_REQUEST', message: 'no member has 4 GPUs', hint: 'the grid has 2 GPUs at most' })
  })

  it('reports a lost agent when the connection ends before the exit', async () => {
    await fakeAgent(async (ch) => {
      await ch.send(started)
      await ch.send({ t: 'out', fd: 1, data: bytes('partial') })
      ch.destroy()
    })
    const t = io()
    const err = await runVrun({ spec: spec(['x']), tty: 'no' }, t).catch((e: unknown) => e)
    expect((err as Error).message).toBe('lost connection to the agent')
    expect(t.stdout.text).toBe('partial')
  })

  it('forwards signals; a SIGINT after a stop request kills', async () => {
    let inputs: Array<Record<string, unknown>> = []
    const t = io()
    // once vrun has written output, the command has started: raise signals in it
    t.stdout.onWrite = () => { t.signals.emit('SIGHUP'); t.signals.emit('SIGTERM'); t.signals.emit('SIGTERM'); t.signals.emit('SIGINT') }
    await fakeAgent(async (ch) => {
      await ch.send(started)
      await ch.send({ t: 'out', fd: 1, data: bytes('running\n') })
      inputs = await readInputs(ch, (m) => m.sig === 'SIGKILL')
      await ch.send({ t: 'exit', code: 137, signal: 'SIGKILL' })
    })
    t.stdin.end()
    expect(await runVrun({ spec: spec(['sleep', '100']), tty: 'no' }, t)).toBe(137)
    expect(inputs.filter((m) => m.t === 'signal').map((m) => m.sig)).toEqual(['SIGHUP', 'SIGTERM', 'SIGTERM', 'SIGKILL'])
    expect(t.signals.listenerCount('SIGINT')).toBe(0)
  })

  it('Ctrl-C twice: SIGINT, then SIGKILL', async () => {
    let inputs: Array<Record<string, unknown>> = []
    const t = io()
    t.stdout.onWrite = () => { t.signals.emit('SIGINT'); t.signals.emit('SIGINT') }
    await fakeAgent(async (ch) => {
      await ch.send(started)
      await ch.send({ t: 'out', fd: 1, data: bytes('running\n') })
      inputs = await readInputs(ch, (m) => m.sig === 'SIGKILL')
      await ch.send({ t: 'exit', code: 137, signal: 'SIGKILL' })
    })
    t.stdin.end()
    expect(await runVrun({ spec: spec(['sleep', '100']), tty: 'no' }, t)).toBe(137)
    expect(inputs.filter((m) => m.t === 'signal').map((m) => m.sig)).toEqual(['SIGINT', 'SIGKILL'])
  })

  it('a signal before the command started cancels: the connection closes, exit 128+N', async () => {
    let closed = false
    const t = io()
    await fakeAgent(async (ch) => {
      t.signals.emit('SIGINT') // still "placing": nothing started
      closed = (await ch.recv().catch(() => undefined)) === undefined
    })
    expect(await runVrun({ spec: spec(['x']), tty: 'no' }, t)).toBe(130)
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(closed).toBe(true)
  })

  it('tty mode: asks for a pty of the terminal\'s size, raw mode while it runs, resizes follow', async () => {
    let req: Record<string, unknown> | undefined
    let inputs: Array<Record<string, unknown>> = []
    const raw: boolean[] = []
    const stdin = Object.assign(new PassThrough(), { isTTY: true, setRawMode: (on: boolean) => { raw.push(on) } })
    const stdout = Object.assign(new Sink(), { isTTY: true, columns: 120, rows: 40 })
    const t = io({ stdin, stdout, env: { TERM: 'screen' } })
    stdout.onWrite = () => { stdout.onWrite = undefined; stdout.columns = 100; stdout.emit('resize'); stdin.write('\x03') }
    await fakeAgent(async (ch, r) => {
      req = r
      await ch.send(started)
      await ch.send({ t: 'out', fd: 1, data: bytes('$ ') })
      inputs = await readInputs(ch, (m) => m.t === 'stdin')
      await ch.send({ t: 'out', fd: 1, data: bytes('^C\r\n') })
      await ch.send({ t: 'exit', code: 130 })
    })
    expect(await runVrun({ spec: spec(['top']), tty: 'auto' }, t)).toBe(130)
    expect((req!.spec as RunSpec).tty).toEqual({ cols: 120, rows: 40, term: 'screen' })
    expect(inputs[0]).toEqual({ t: 'resize', cols: 100, rows: 40 })
    expect(Buffer.from(inputs[1]!.data as Uint8Array).toString()).toBe('\x03')
    expect(raw).toEqual([true, false])
    expect(stdout.listenerCount('resize')).toBe(0)
  })

  it('tty auto without a terminal: no pty', async () => {
    let req: Record<string, unknown> | undefined
    await fakeAgent(async (ch, r) => { req = r; await ch.send(started); await ch.send({ t: 'exit', code: 0 }) })
    await runVrun({ spec: spec(['ls']), tty: 'auto' }, io())
    expect((req!.spec as RunSpec).tty).toBeUndefined()
  })
})

describe('control client', () => {
  it('no agent: ERR_NO_AGENT naming the socket, with the hint to start one', async () => {
    const err = await connectAgent(home, 'test').catch((e: unknown) => e) as VgridError
    expect(err.code).toBe('ERR_NO_AGENT')
    expect(err.message).toBe(`no vgrid agent is running (looked for ${path.join(home, 'agent.sock')})`)
    expect(err.hint).toContain('vgrid agent --join TOKEN')
    expect(err.hint).toContain('VGRID_HOME')
  })

  it('a stale socket left by a killed agent is "no agent" too', async () => {
    const sock = path.join(home, 'agent.sock')
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`])
    await new Promise((resolve) => child.stdout.once('data', resolve))
    child.kill('SIGKILL')
    await new Promise((resolve) => child.once('exit', resolve))
    expect(fs.existsSync(sock)).toBe(true)
    const err = await connectAgent(home, 'test').catch((e: unknown) => e) as VgridError
    expect(err.code).toBe('ERR_NO_AGENT')
    expect(err.message).toBe(`no vgrid agent is running (looked for ${sock})`)
  })

  it('another protocol version: ERR_AGENT_VERSION with a hint to restart the agent', async () => {
    await fakeAgent(async () => {}, CONTROL_VERSION + 1)
    const err = await connectAgent(home, 'test').catch((e: unknown) => e) as VgridError
    expect(err.code).toBe('ERR_AGENT_VERSION')
    expect(err.hint).toContain('restart the agent')
  })

  it('an agent that refuses the hello: its error, rebuilt', async () => {
    server = net.createServer((socket) => {
      const ch = socketChannel(socket)
      void ch.recv().then(async () => { await ch.send({ t: 'error', error: { code: 'ERR_AGENT_VERSION', message: 'too old', hint: 'restart' } }) })
    })
    await new Promise<void>((resolve) => { server!.listen(path.join(home, 'agent.sock'), resolve) })
    await expect(connectAgent(home, 'test')).rejects.toMatchObject({ code: 'ERR_AGENT_VERSION', message: 'too old' })
  })

  it('an agent that never answers: ERR_TIMEOUT', async () => {
    server = net.createServer(() => {})
    await new Promise<void>((resolve) => { server!.listen(path.join(home, 'agent.sock'), resolve) })
    await expect(connectAgent(home, 'test', { timeoutMs: 100 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' })
    // the server keeps the silent socket open; close() waits for it, so drop it
    server.close()
    server = undefined
  })

  it('the request travels right behind the hello, not a round trip after it (vrun, one-shot requests)', async () => {
    // This agent answers nothing until it holds both: a client that waits for the hello's
    // answer before it sends its request would wait forever (here: ERR_TIMEOUT).
    server = net.createServer((socket) => {
      const ch = socketChannel(socket)
      void (async () => {
        const hello = await ch.recv() as Record<string, unknown>
        const req = await ch.recv() as Record<string, unknown>
        await ch.send({ t: 'hello', v: CONTROL_VERSION, peer: '12D3KooWFakeAgentPeerId' })
        expect(hello.t).toBe('hello')
        if (req.t === 'peers') await ch.send({ t: 'peers', peers: [] })
        else if (req.t === 'run') { await ch.send(started); await ch.send({ t: 'exit', code: 3 }) }
      })().catch(() => { ch.destroy() })
    })
    await new Promise<void>((resolve) => { server!.listen(path.join(home, 'agent.sock'), resolve) })
    expect(await request(home, { t: 'peers' }, { timeoutMs: 2_000 })).toEqual({ t: 'peers', peers: [] })
    expect(await runVrun({ spec: spec(['x']), tty: 'no' }, io())).toBe(3)
  })

  it('request: one reply, checked; an error reply is thrown', async () => {
    await fakeAgent(async (ch, req) => {
      if (req.t === 'peers') await ch.send({ t: 'peers', peers: [{ peer: 'x' }] })
      else if (req.t === 'join-token') await ch.send({ t: 'join-token', token: 'tok' })
      else await ch.send({ t: 'error', error: { code: 'ERR_INTERNAL', message: 'nope' } })
    })
    expect(await request(home, { t: 'peers' })).toEqual({ t: 'peers', peers: [{ peer: 'x' }] })
    expect(await request(home, { t: 'join-token' })).toEqual({ t: 'join-token', token: 'tok' })
    await expect(request(home, { t: 'status' })).rejects.toMatchObject({ code: 'ERR_INTERNAL', message: 'nope' })
  })
})
