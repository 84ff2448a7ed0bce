/**
 * The task requests of the control client, `vbatch -f` and `vgrid task` against a scripted
 * fake agent on a real Unix socket: what is sent, what is printed, the exit status.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { socketChannel, type FrameChannel } from '../../src/common/channel.js'
import { CONTROL_VERSION } from '../../src/protocol/control.js'
import { call, taskLog } from '../../src/agent/control/client.js'
import type { TaskRecord } from '../../src/agent/tasks/types.js'
import { followTasks } from '../../src/cli/vbatch-follow.js'
import { runTaskCommand } from '../../src/cli/vgrid-task.js'

type Script = (channel: FrameChannel, req: Record<string, unknown>) => Promise<void>

let home: string
let server: net.Server | undefined
/** Every request the fake agent received, in order. */
let requests: Array<Record<string, unknown>>

beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-vbatch-'))
  requests = []
})
afterEach(async () => {
  await new Promise<void>((resolve) => { if (server === undefined) resolve(); else server.close(() => { resolve() }) })
  server = undefined
  fs.rmSync(home, { recursive: true, force: true })
})

async function fakeAgent (script: Script): Promise<void> {
  server = net.createServer((socket) => {
    const channel = socketChannel(socket)
    void (async () => {
      await channel.recv()
      await channel.send({ t: 'hello', v: CONTROL_VERSION, peer: '12D3KooWFakeAgentPeerId' })
      const req = await channel.recv() as Record<string, unknown> | undefined
      if (req === undefined) return
      requests.push(req)
      await script(channel, req)
    })().catch(() => { channel.destroy() })
  })
  await new Promise<void>((resolve) => { server!.listen(path.join(home, 'agent.sock'), resolve) })
}

class Sink extends Writable {
  chunks: Buffer[] = []
  override _write (chunk: Buffer, _enc: string, cb: () => void): void { this.chunks.push(chunk); cb() }
  get text (): string { return Buffer.concat(this.chunks).toString() }
}

const ID1 = '0123456789abcdef'
const ID2 = 'fedcba9876543210'
const text = (s: string): Uint8Array => new TextEncoder().encode(s)

function record (id: string, over: Partial<TaskRecord> = {}): TaskRecord {
  return { id, owner: '12D3KooWFakeAgentPeerId', ownerHost: 'here', argv: ['x'], state: 'succeeded', exitCode: 0, created: Date.now(), deps: [], retries: 0, attempts: [], attached: false, children: [], ...over }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

describe('the control client\'s task requests', () => {
  it('batch → the ids; task-show → the record, validated', async () => {
    await fakeAgent(async (ch, req) => {
      if (req.t === 'batch') await ch.send({ t: 'batched', ids: [ID1, ID2] })
      else await ch.send({ t: 'task', task: record(String(req.id).padEnd(16, '0')) })
    })
    const batch = { spec: { argv: ['ls'], env: {}, cpus: 1, gpus: 0 }, after: [], shards: 2, gang: false, retries: 0 }
    expect(await call(home, { t: 'batch', batch })).toEqual({ t: 'batched', ids: [ID1, ID2] })
    expect(requests[0]).toEqual({ t: 'batch', batch })
    const { task } = await call(home, { t: 'task-show', id: 'abc' })
    expect(task.id).toBe('abc0000000000000')
  })

  it('refuses a malformed reply', async () => {
    await fakeAgent(async (ch, req) => {
      if (req.t === 'batch') await ch.send({ t: 'batched', ids: ['nope'] })
      else if (req.t === 'task-list') await ch.send({ t: 'task-list', tasks: [{ id: ID1 }], unreachable: [] })
      else await ch.send({ t: 'peers', peers: [] })
    })
    const batch = { spec: { argv: ['ls'], env: {}, cpus: 1, gpus: 0 }, after: [], shards: 1, gang: false, retries: 0 }
    await expect(call(home, { t: 'batch', batch })).rejects.toMatchObject({ code: 'ERR_BAD_MESSAGE' })
    await expect(call(home, { t: 'task-list', all: false })).rejects.toMatchObject({ code: 'ERR_BAD_MESSAGE' })
    await expect(call(home, { t: 'task-show', id: ID1 })).rejects.toMatchObject({ code: 'ERR_BAD_MESSAGE', message: 'malformed message: expected a task reply, got peers' })
  })

  it('task-wait has no deadline; the other requests do', async () => {
    await fakeAgent(async (ch, req) => {
      await sleep(300)
      await ch.send({ t: 'task', task: record(String(req.id)) })
    })
    expect((await call(home, { t: 'task-wait', id: ID1 }, { timeoutMs: 100 })).task.id).toBe(ID1)
    await expect(call(home, { t: 'task-show', id: ID1 }, { timeoutMs: 100 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' })
  })

  it('task-log yields output frames, then the record, and ends', async () => {
    await fakeAgent(async (ch) => {
      await ch.send({ t: 'log', fd: 1, data: text('out') })
      await ch.send({ t: 'log', fd: 2, data: text('err') })
      await ch.send({ t: 'task', task: record(ID1) })
    })
    const frames = []
    for await (const f of taskLog(home, { id: ID1, follow: false, stderrOnly: true })) frames.push(f)
    expect(frames.map((f) => f.t === 'log' ? [f.fd, Buffer.from(f.data).toString()] : f.task.id)).toEqual([[1, 'out'], [2, 'err'], ID1])
    expect(requests[0]).toEqual({ t: 'task-log', id: ID1, follow: false, stderrOnly: true })
  })

  it.each([
    [{ t: 'log', fd: 3, data: text('x') }, 'fd is not 1 or 2'],
    [{ t: 'log', fd: 1, data: new Uint8Array(1024 * 1024 + 1) }, 'larger than'],
    [{ t: 'log', fd: 1, data: 'text' }, 'data is not bytes'],
    [{ t: 'error', error: { code: 'ERR_BAD_ARGUMENT', message: 'no task abc' } }, 'no task abc']
  ])('task-log refuses %j', async (frame, message) => {
    await fakeAgent(async (ch) => { await ch.send(frame) })
    const read = async (): Promise<void> => { for await (const f of taskLog(home, { id: ID1, follow: true, stderrOnly: false })) void f }
    await expect(read()).rejects.toThrow(message)
  })

  it('an agent that goes away mid-log: ERR_PEER_LOST', async () => {
    await fakeAgent(async (ch) => { await ch.send({ t: 'log', fd: 1, data: text('x') }); ch.destroy() })
    const read = async (): Promise<void> => { for await (const f of taskLog(home, { id: ID1, follow: true, stderrOnly: false })) void f }
    await expect(read()).rejects.toMatchObject({ code: 'ERR_PEER_LOST' })
  })
})

describe('vbatch -f', () => {
  const io = (signals = new EventEmitter()) => ({ home, quiet: false, stdout: new Sink(), stderr: new Sink(), signals, cancelWindowMs: 300 })

  it('streams each shard in turn and exits with the first non-zero status', async () => {
    await fakeAgent(async (ch, req) => {
      const id = String(req.id)
      await ch.send({ t: 'log', fd: 1, data: text(`out ${id.slice(0, 2)}\n`) })
      await ch.send({ t: 'log', fd: 2, data: text(`err ${id.slice(0, 2)}\n`) })
      await ch.send({ t: 'task', task: record(id, id === ID1 ? { state: 'failed', exitCode: 3 } : {}) })
    })
    const o = io()
    expect(await followTasks([ID2, ID1], o)).toBe(3)
    expect(o.stdout.text).toBe('out fe\nout 01\n')
    expect(o.stderr.text).toBe(`vbatch: tasks ${ID2} and ${ID1}\nerr fe\nerr 01\n`)
    expect(requests).toEqual([{ t: 'task-log', id: ID2, follow: true, stderrOnly: false }, { t: 'task-log', id: ID1, follow: true, stderrOnly: false }])
  })

  it('says why a task ended when its status does not; 254 for one whose dependency failed', async () => {
    await fakeAgent(async (ch, req) => { await ch.send({ t: 'task', task: record(String(req.id), { state: 'upstream-failed', exitCode: undefined, error: 'prep failed' }) }) })
    const o = io()
    o.quiet = true
    expect(await followTasks([ID1], o)).toBe(254)
    expect(o.stderr.text).toBe('')
  })

  it('a first Ctrl-C detaches: the task is left running, exit 0', async () => {
    await fakeAgent(async (ch, req) => {
      if (req.t !== 'task-log') return
      await ch.send({ t: 'log', fd: 1, data: text('working\n') })
      await ch.recv() // until the client goes away
    })
    const signals = new EventEmitter()
    const o = io(signals)
    const code = followTasks([ID1], o)
    while (!o.stdout.text.includes('working')) await sleep(10)
    signals.emit('SIGINT')
    expect(await code).toBe(0)
    expect(o.stderr.text).toContain(`vbatch: detached; task ${ID1} keeps running (vgrid task log -f ${ID1} to follow, Ctrl-C again within 0.3 s cancels it)\n`)
    expect(requests.map((r) => r.t)).toEqual(['task-log'])
    expect(signals.listenerCount('SIGINT')).toBe(0)
  })

  it('a second Ctrl-C within the window cancels every task and exits 130', async () => {
    await fakeAgent(async (ch, req) => {
      if (req.t === 'task-cancel') { await ch.send({ t: 'task', task: record(String(req.id), { state: 'cancelled' }) }); return }
      await ch.send({ t: 'log', fd: 1, data: text('working\n') })
      await ch.recv()
    })
    const signals = new EventEmitter()
    const o = io(signals)
    const code = followTasks([ID1, ID2], o)
    while (!o.stdout.text.includes('working')) await sleep(10)
    signals.emit('SIGINT')
    signals.emit('SIGINT')
    expect(await code).toBe(130)
    expect(o.stderr.text).toContain(`vbatch: detached; tasks ${ID1} and ${ID2} keep running (vgrid task log -f ID to follow, Ctrl-C again within 0.3 s cancels them)\n`)
    expect(o.stderr.text).toContain('vbatch: cancelled 2 of 2 tasks\n')
    expect(requests.filter((r) => r.t === 'task-cancel').map((r) => r.id).sort()).toEqual([ID1, ID2])
  })
})

describe('vgrid task against a fake agent', () => {
  const run = async (inv: Parameters<typeof runTaskCommand>[0]) => {
    const stdout = new Sink()
    const stderr = new Sink()
    const code = await runTaskCommand(inv, { env: { VGRID_HOME: home }, stdout, stderr })
    return { code, stdout: stdout.text, stderr: stderr.text }
  }

  it('list: the tree, and a line for members that did not answer', async () => {
    await fakeAgent(async (ch) => {
      await ch.send({ t: 'task-list', tasks: [record(ID1, { argv: ['make'] }), record(ID2, { parent: ID1, argv: ['cc'] })], unreachable: ['lab-07'] })
    })
    const r = await run({ kind: 'task', action: 'list', all: true, json: false })
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines[1]).toMatch(/^0123456789ab +- +succeeded +0 +- .* make$/)
    expect(lines[2]).toMatch(/^ {2}fedcba987654 +- +succeeded +0 +- .* cc$/)
    expect(r.stderr).toBe('vgrid: 1 member did not answer; their tasks are missing: lab-07\n')
    expect(requests[0]).toEqual({ t: 'task-list', all: true })
  })

  it('wait: the task\'s status, with a line when it did not succeed', async () => {
    await fakeAgent(async (ch, req) => { await ch.send({ t: 'task', task: record(String(req.id), { state: 'failed', exitCode: 7 }) }) })
    expect(await run({ kind: 'task', action: 'wait', id: ID1 })).toEqual({ code: 7, stdout: '', stderr: 'vgrid: task 0123456789ab failed (exit 7)\n' })
  })

  it('log -f: the output, then the task\'s status', async () => {
    await fakeAgent(async (ch) => {
      await ch.send({ t: 'log', fd: 1, data: text('hello\n') })
      await ch.send({ t: 'task', task: record(ID1, { state: 'failed', exitCode: 4 }) })
    })
    expect(await run({ kind: 'task', action: 'log', id: ID1, follow: true, stderrOnly: false })).toEqual({ code: 4, stdout: 'hello\n', stderr: '' })
    expect(await run({ kind: 'task', action: 'log', id: ID1, follow: false, stderrOnly: false })).toMatchObject({ code: 0 })
  })

  it('cancel: says what became of the task', async () => {
    await fakeAgent(async (ch, req) => { await ch.send({ t: 'task', task: record(String(req.id), { state: 'cancelled', children: [ID2] }) }) })
    expect(await run({ kind: 'task', action: 'cancel', id: ID1 })).toEqual({ code: 0, stdout: `cancelled ${ID1} (and its sub-task)\n`, stderr: '' })
  })
})
