/**
 * Workspace sync against a member that sends anything. As a submitter it offers trees with
 * hand-made records (names that climb out, absolute paths, separators, duplicates, chunks
 * whose bytes lie); as an executor it offers outputs that do the same. The agent refuses
 * each, writes nothing outside its workspace copies and the user's workspace, and keeps
 * serving.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { encode } from 'cborg'
import { startAgent, type Agent } from '../../src/agent/agent.js'
import { resolveAgentConfig } from '../../src/agent/config.js'
import { connectAgent } from '../../src/agent/control/client.js'
import type { Grid } from '../../src/grid/index.js'
import { startHostileMember } from '../helpers/hostile-member.js'
import { EXEC_PROTOCOL, EXEC_PROTOCOL_VERSION } from '../../src/agent/constants.js'
import { ExportRegistry, SYNC_PROTOCOL, SYNC_MAX_FRAME_BYTES } from '../../src/fs-sync/index.js'
import type { FrameChannel } from '../../src/common/channel.js'
import { tempDir, waitFor } from '../helpers/procs.js'

let agent: Agent
let hostile: Grid
// Made at load: the tables of cases below name the sentinel.
const home = tempDir()
/** A directory beside the agent's home: nothing may ever appear in it. */
const sentinel = path.join(home, '..', `${path.basename(home)}-sentinel`)
fs.mkdirSync(sentinel)
const registry = new ExportRegistry()
const EXECUTOR_CPUS = 2

const sha = (b: Uint8Array): Uint8Array => createHash('sha256').update(b).digest()
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** A tree of raw records, as a hostile peer would build it: nothing checked. */
function rawExport (entries: unknown[], chunks: Record<string, Uint8Array> = {}, lie?: { hash: string, bytes: Uint8Array }): { root: Uint8Array, blobs: Map<string, Uint8Array> } {
  const record = encode({ v: 1, e: entries })
  const root = sha(record)
  const blobs = new Map<string, Uint8Array>([[hex(root), record]])
  for (const [h, data] of Object.entries(chunks)) blobs.set(h, data)
  if (lie !== undefined) blobs.set(lie.hash, lie.bytes)
  return { root, blobs }
}

function fileEntry (name: string, data: Uint8Array): Record<string, unknown> {
  return { n: name, k: 'f', s: data.byteLength, x: false, m: 0, c: sha(data), z: [data.byteLength] }
}

beforeAll(async () => {
  agent = await startAgent(resolveAgentConfig({ listen: '/ip4/127.0.0.1/tcp/0', http: 'off' }, { VGRID_HOME: home }))
  hostile = await startHostileMember(agent, home, EXECUTOR_CPUS)
  await hostile.handle(SYNC_PROTOCOL, registry.serve, { maxFrameBytes: SYNC_MAX_FRAME_BYTES })
}, 30_000)

afterAll(async () => {
  await hostile?.stop()
  await agent?.stop()
})

/** The hostile member asks the agent to run a command in the offered tree. */
async function execWithTree (tree: { root: Uint8Array, blobs: Map<string, Uint8Array> }): Promise<any[]> {
  const session = registry.add({ rootHash: tree.root, blobs: tree.blobs, sources: new Map(), peer: agent.grid.peerId })
  const ch: FrameChannel = await hostile.open(agent.grid.peerId, EXEC_PROTOCOL)
  await ch.send({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task: randomBytes(8).toString('hex'), spec: { argv: ['sh', '-c', 'ls -A; touch made-here'], env: {}, cpus: 1, gpus: 0 }, ws: { session, root: tree.root, key: 'a'.repeat(32) } })
  const replies: any[] = []
  for (;;) {
    const m = await ch.recv().catch(() => undefined) as any
    if (m === undefined) break
    if (m.t === 'claimed') { await ch.send({ t: 'go' }); continue }
    replies.push(m)
    // A hostile submitter does not pull outputs: the exit would only come after the executor gives up.
    if (m.t === 'exit' || m.t === 'error' || m.t === 'outputs') break
  }
  ch.destroy()
  registry.remove(session)
  return replies
}

function outsideUntouched (): void {
  expect(fs.readdirSync(sentinel)).toEqual([])
  expect(fs.readdirSync(path.dirname(home)).filter((n) => n === 'escape' || n === 'pwned')).toEqual([])
  expect(fs.existsSync('/pwned')).toBe(false)
}

describe('a hostile submitter', () => {
  const data = new TextEncoder().encode('payload')
  for (const [what, entries] of [
    ['a name that climbs out', [fileEntry('..', data)]],
    ['a name with a separator', [fileEntry(`../${path.basename(sentinel)}/pwned`, data)]],
    ['an absolute name', [fileEntry(`${sentinel}/pwned`, data)]],
    ['a NUL in a name', [fileEntry('a\0b', data)]],
    ['duplicate names', [fileEntry('same', data), fileEntry('same', data)]],
    ['unsorted names', [fileEntry('b', data), fileEntry('a', data)]],
    ['a size that does not add up', [{ ...fileEntry('f', data), s: 99 }]],
    ['a link and a dir of one name', [{ n: 'x', k: 'l', t: sentinel }, { n: 'x', k: 'd', h: new Uint8Array(32) }]]
  ] as Array<[string, unknown[]]>) {
    it(`is refused for ${what}`, async () => {
      const replies = await execWithTree(rawExport(entries, { [hex(sha(data))]: data }))
      expect(replies.at(-1)).toMatchObject({ t: 'error' })
      expect(replies.some((r) => r.t === 'started')).toBe(false)
      outsideUntouched()
    })
  }

  it('cannot make the agent write through a link it planted', async () => {
    const inner = encode({ v: 1, e: [fileEntry('pwned', data)] })
    const tree = rawExport([{ n: 'a', k: 'l', t: sentinel }, { n: 'b', k: 'd', h: sha(inner) }], { [hex(sha(data))]: data, [hex(sha(inner))]: inner })
    const replies = await execWithTree(tree)
    // The tree is legal (a link and a directory): the command runs, nothing goes through the link.
    const out = replies.filter((r) => r.t === 'out').map((r) => Buffer.from(r.data).toString()).join('')
    expect(out).toBe('a\nb\n')
    expect(fs.readlinkSync(path.join(home, 'workspaces', fs.readdirSync(path.join(home, 'workspaces'))[0], '0', 'a'))).toBe(sentinel)
    outsideUntouched()
    // The command has ended: its core is free even though its outputs were never pulled.
    await waitFor(() => agent.grid.view().find((p) => p.self)?.load.cpusFree === agent.offer.cpus, 'the reservation to be released')
  })

  it('gets a chunk whose bytes lie refused after retries', async () => {
    // Content no earlier case sent: the executor's store cannot already hold it.
    const claimed = new TextEncoder().encode('claimed payload, never stored')
    const replies = await execWithTree(rawExport([fileEntry('f', claimed)], {}, { hash: hex(sha(claimed)), bytes: new TextEncoder().encode('tampered') }))
    expect(replies.at(-1)).toMatchObject({ t: 'error', error: { code: 'ERR_CHUNK_HASH_MISMATCH' } })
  })

  it('leaves the agent serving honest trees', async () => {
    const replies = await execWithTree(rawExport([fileEntry('f', data)], { [hex(sha(data))]: data }))
    // `touch made-here` changed the copy: the outputs are offered (and never pulled by this peer).
    expect(replies.at(-1)).toMatchObject({ t: 'outputs', exit: { code: 0 } })
    const out = replies.filter((r) => r.t === 'out').map((r) => Buffer.from(r.data).toString()).join('')
    expect(out).toBe('f\n')
    outsideUntouched()
  })
})

describe('a hostile executor', () => {
  let offered: { root: Uint8Array, blobs: Map<string, Uint8Array> }
  beforeAll(async () => {
    // The hostile member runs nothing: it answers every exec with outputs of its choosing.
    await hostile.handle(EXEC_PROTOCOL, async (ch, submitter) => {
      await ch.recv()
      // It grants every claim, and never waits for the go.
      await ch.send({ t: 'claimed', leaseMs: 10_000 })
      await ch.send({ t: 'started', pid: 1, peer: hostile.peerId, host: 'hostile', gpus: [] })
      const session = registry.add({ rootHash: offered.root, blobs: offered.blobs, sources: new Map(), peer: submitter })
      await ch.send({ t: 'outputs', root: offered.root, session, exit: { code: 3 } })
      await registry.pulled(session, 10_000)
      await ch.send({ t: 'exit', code: 3 })
      await ch.close()
    })
  })

  async function runAgainst (tree: typeof offered): Promise<{ events: any[], ws: string }> {
    offered = tree
    const ws = tempDir('vgrid-ws-')
    fs.writeFileSync(path.join(ws, 'mine.txt'), 'mine')
    fs.symlinkSync(sentinel, path.join(ws, 'link'))
    const { channel } = await connectAgent(home, 'test')
    await channel.send({ t: 'run', spec: { argv: ['true'], env: {}, cpus: 1, gpus: 0 }, on: hostile.peerId, workspace: { dir: fs.realpathSync(ws), cwd: '' } })
    const events: any[] = []
    for (;;) {
      const m = await channel.recv().catch(() => undefined) as any
      if (m === undefined) break
      events.push(m)
      if (m.t === 'exit' || m.t === 'error') break
    }
    channel.destroy()
    return { events, ws }
  }

  const data = new TextEncoder().encode('evil')
  for (const [what, entries] of [
    ['a name that climbs out', [fileEntry('..', data)]],
    ['an absolute name', [fileEntry(`${sentinel}/pwned`, data)]]
  ] as Array<[string, unknown[]]>) {
    it(`cannot bring back ${what}`, async () => {
      const { events, ws } = await runAgainst(rawExport(entries, { [hex(sha(data))]: data }))
      expect(events.at(-1)).toMatchObject({ t: 'error' })
      // the command's exit status comes with the offer: the user knows it ran, and how it ended
      expect(events.at(-1).error.message).toMatch(/^the command exited with 3, but its outputs could not be brought back: /)
      expect(fs.readFileSync(path.join(ws, 'mine.txt'), 'utf8')).toBe('mine')
      outsideUntouched()
    })
  }

  it('cannot write through a link in the user\'s workspace', async () => {
    const inner = encode({ v: 1, e: [fileEntry('pwned', data)] })
    // The user has `link -> sentinel`; the outputs claim `link/` is a directory holding `pwned`.
    const tree = rawExport([{ n: 'link', k: 'd', h: sha(inner) }, { n: 'mine.txt', k: 'f', s: 4, x: false, m: 0, c: sha(new TextEncoder().encode('mine')), z: [4] }],
      { [hex(sha(data))]: data, [hex(sha(inner))]: inner })
    const { events, ws } = await runAgainst(tree)
    expect(events.length).toBeGreaterThan(0)
    expect(fs.readFileSync(path.join(ws, 'mine.txt'), 'utf8')).toBe('mine')
    outsideUntouched()
  })
})
