/**
 * `/vgrid/exec/1.0.0` (protocol version 2: a claim first) from a member that sends anything: malformed requests, task ids and
 * working directories that try to leave the agent's home, requests past the ledger. The agent
 * refuses each with a reason, writes nothing outside its scratch space, and keeps serving.
 */
import { randomBytes } from 'node:crypto'
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { startAgent, type Agent } from '../../src/agent/agent.js'
import { resolveAgentConfig } from '../../src/agent/config.js'
import type { Grid } from '../../src/grid/index.js'
import { startHostileMember } from '../helpers/hostile-member.js'
import { EXEC_PROTOCOL, EXEC_PROTOCOL_VERSION } from '../../src/agent/constants.js'
import type { FrameChannel } from '../../src/common/channel.js'
import { tempDir, waitFor } from '../helpers/procs.js'

let agent: Agent
let hostile: Grid
let home: string

beforeAll(async () => {
  home = tempDir()
  agent = await startAgent(resolveAgentConfig({ listen: '/ip4/127.0.0.1/tcp/0', http: 'off' }, { VGRID_HOME: home }))
  hostile = await startHostileMember(agent, home)
}, 30_000)

afterAll(async () => {
  await hostile?.stop()
  await agent?.stop()
})

/**
 * One exec session as a submitter runs it: the request, `go` once the executor holds the
 * claim, then `more`. The replies after the claim (or the refusal), up to the end.
 */
async function exchange (first: unknown, ...more: unknown[]): Promise<any[]> {
  const ch: FrameChannel = await hostile.open(agent.grid.peerId, EXEC_PROTOCOL)
  await ch.send(first)
  const replies: any[] = []
  for (;;) {
    const m = await ch.recv().catch(() => undefined)
    if (m === undefined) break
    if ((m as any).t === 'claimed') {
      await ch.send({ t: 'go' })
      for (const x of more) await ch.send(x)
      continue
    }
    replies.push(m)
    if ((m as any).t === 'exit' || (m as any).t === 'error') break
  }
  ch.destroy()
  return replies
}

const spec = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ argv: ['sh', '-c', 'echo ok'], env: {}, cpus: 1, gpus: 0, ...over })

describe('the exec protocol under hostile input', () => {
  it('runs a valid request', async () => {
    const replies = await exchange({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task: '0123456789abcdef', spec: spec() })
    expect(replies[0]).toMatchObject({ t: 'started' })
    expect(Buffer.from(replies.find((r) => r.t === 'out').data).toString()).toBe('ok\n')
    expect(replies.at(-1)).toMatchObject({ t: 'exit', code: 0 })
  })

  it('refuses task ids that are not ids (no path from a peer reaches the disk)', async () => {
    const outside = path.join(path.dirname(home), `escape-${Date.now()}`)
    for (const task of ['../../../tmp/x', path.relative(path.join(home, 'scratch'), outside), 'ABCDEF0123456789', '']) {
      const replies = await exchange({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task, spec: spec({ argv: ['touch', 'pwned'] }) })
      expect(replies).toMatchObject([{ t: 'error', error: { code: 'ERR_BAD_MESSAGE' } }])
    }
    expect(fs.existsSync(outside)).toBe(false)
  })

  it('refuses a working directory outside the scratch space', async () => {
    for (const cwd of ['../../..', '/etc', 'a/../../b', 'x\0y']) {
      const replies = await exchange({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task: 'aaaaaaaaaaaaaaaa', spec: spec({ cwd, argv: ['touch', 'pwned'] }) })
      expect(replies).toMatchObject([{ t: 'error', error: { code: 'ERR_BAD_ARGUMENT' } }])
    }
    expect(fs.existsSync(path.join(home, 'pwned'))).toBe(false)
    expect(fs.existsSync('/etc/pwned')).toBe(false)
  })

  it('refuses malformed requests and other versions', async () => {
    for (const bad of [
      'hello', 42, [], { t: 'exec' }, { t: 'exec', v: EXEC_PROTOCOL_VERSION, task: 'aaaaaaaaaaaaaaaa', spec: { argv: [] } },
      { t: 'exec', v: EXEC_PROTOCOL_VERSION, task: 'aaaaaaaaaaaaaaaa', spec: spec({ cpus: 1.5 }) },
      { t: 'exec', v: EXEC_PROTOCOL_VERSION, task: 'aaaaaaaaaaaaaaaa', spec: spec({ argv: Array(100_001).fill('x') }) },
      // each argument within its cap, all of them past Linux's 2 MiB
      { t: 'exec', v: EXEC_PROTOCOL_VERSION, task: 'aaaaaaaaaaaaaaaa', spec: spec({ argv: Array(20).fill('y'.repeat(120 * 1024)) }) },
      { t: 'stdin', data: new Uint8Array(3) }
    ]) {
      const replies = await exchange(bad)
      expect(replies).toMatchObject([{ t: 'error', error: { code: 'ERR_BAD_MESSAGE' } }])
    }
    for (const v of [EXEC_PROTOCOL_VERSION - 1, EXEC_PROTOCOL_VERSION + 1]) {
      expect(await exchange({ t: 'exec', v, task: 'aaaaaaaaaaaaaaaa', spec: spec() })).toMatchObject([{ t: 'error', error: { code: 'ERR_AGENT_VERSION' } }])
    }
  })

  it('refuses a frame past the size limit', async () => {
    const replies = await exchange({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task: 'aaaaaaaaaaaaaaaa', spec: spec({ env: { BIG: 'x'.repeat(5 * 1024 * 1024) } }) }).catch((err) => [{ t: 'error', error: { code: err.code } }])
    expect(replies.length).toBeLessThanOrEqual(1)
    expect(replies.every((r) => r.t === 'error')).toBe(true)
  })

  it('refuses more than the machine lends', async () => {
    const replies = await exchange({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task: 'aaaaaaaaaaaaaaaa', spec: spec({ cpus: 4000 }) })
    expect(replies).toMatchObject([{ t: 'error', error: { code: 'ERR_NO_CAPACITY' } }])
  })

  it('ends the session on a malformed input while a command runs', async () => {
    for (const bad of [{ t: 'signal', sig: 'SIGSTOP' }, { t: 'stdin', data: 'text' }, { t: 'resize', cols: -1, rows: 2 }, { t: 'nope' }]) {
      const replies = await exchange({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task: randomBytes(8).toString('hex'), spec: spec({ argv: ['sh', '-c', 'read x; echo got $x'] }) }, bad)
      expect(replies[0]).toMatchObject({ t: 'started' })
      expect(replies.at(-1)).toMatchObject({ t: 'error', error: { code: 'ERR_BAD_MESSAGE' } })
      // The cancelled command's cores come back once it has been reaped.
      await waitFor(() => agent.grid.view().find((p) => p.self)?.load.cpusFree === agent.offer.cpus, 'the reservation to be released')
    }
  })

  it('refuses a pending workspace whose rest is malformed, unknown, or never comes', async () => {
    const ws = { key: randomBytes(16).toString('hex'), path: '/tmp/some-workspace', pending: true }
    const req = (): Record<string, unknown> => ({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task: randomBytes(8).toString('hex'), spec: spec(), ws })
    const cpusBack = async (): Promise<void> => {
      await waitFor(() => agent.grid.view().find((p) => p.self)?.load.cpusFree === agent.offer.cpus, 'the reservation to be released')
    }
    for (const bad of [{ t: 'ws', session: 'not-hex', root: randomBytes(32) }, { t: 'ws', session: randomBytes(16).toString('hex'), root: randomBytes(3) }, { t: 'stdin', data: new Uint8Array(1) }]) {
      const replies = await exchange(req(), bad)
      expect(replies.at(-1)).toMatchObject({ t: 'error', error: { code: 'ERR_BAD_MESSAGE' } })
      await cpusBack()
    }
    // well formed, but no such sync session on the hostile member: the pull is refused there
    const unknown = await exchange(req(), { t: 'ws', session: randomBytes(16).toString('hex'), root: randomBytes(32) })
    expect(unknown.at(-1)).toMatchObject({ t: 'error' })
    await cpusBack()
    // the submitter goes away before its scan is done
    const ch: FrameChannel = await hostile.open(agent.grid.peerId, EXEC_PROTOCOL)
    await ch.send(req())
    expect(await ch.recv()).toMatchObject({ t: 'claimed' })
    await ch.send({ t: 'go' })
    ch.destroy()
    await cpusBack()
  })

  it('keeps serving after all of it', async () => {
    const replies = await exchange({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task: 'cccccccccccccccc', spec: spec() })
    expect(replies.at(-1)).toMatchObject({ t: 'exit', code: 0 })
    expect(agent.grid.view().map((p) => p.peer)).toContain(hostile.peerId)
  })
})
