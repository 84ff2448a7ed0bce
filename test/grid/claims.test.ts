/**
 * Claims (DESIGN §2) against a real agent: it holds what it grants atomically, so 20 claims
 * at once for its 2 GPUs end with exactly 2 held, on different GPUs; a claim is held only
 * for its lease, and one whose submitter goes away or releases it is freed at once.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startAgent, type Agent } from '../../src/agent/agent.js'
import { resolveAgentConfig } from '../../src/agent/config.js'
import type { Grid } from '../../src/grid/index.js'
import { startHostileMember } from '../helpers/hostile-member.js'
import { fakeGpuPath } from '../helpers/fake-gpus.js'
import { EXEC_PROTOCOL, EXEC_PROTOCOL_VERSION, CLAIM_LEASE_MS } from '../../src/agent/constants.js'
import type { FrameChannel } from '../../src/common/channel.js'
import { tempDir, waitFor } from '../helpers/procs.js'

let agent: Agent
let hostile: Grid

beforeAll(async () => {
  const home = tempDir()
  // GPU detection runs nvidia-smi from this process's PATH (this test file has its own worker).
  Object.assign(process.env, fakeGpuPath('A100-SXM4-80GB:81920,A100-SXM4-80GB:81920'))
  agent = await startAgent(resolveAgentConfig({ listen: '/ip4/127.0.0.1/tcp/0', http: 'off' }, { VGRID_HOME: home }))
  expect(agent.offer.gpus).toEqual([0, 1])
  hostile = await startHostileMember(agent, home)
}, 30_000)

afterAll(async () => {
  await hostile?.stop()
  await agent?.stop()
})

let nextTask = 0
const taskId = (): string => (nextTask++).toString(16).padStart(16, 'a')
const spec = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ argv: ['sh', '-c', 'echo $CUDA_VISIBLE_DEVICES'], env: {}, cpus: 0, gpus: 1, ...over })

/** Sends an exec request; resolves with the executor's first answer and the stream. */
async function claim (s = spec()): Promise<{ ch: FrameChannel, answer: any }> {
  const ch = await hostile.open(agent.grid.peerId, EXEC_PROTOCOL)
  await ch.send({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task: taskId(), spec: s })
  return { ch, answer: await ch.recv() }
}

/** After `go`: the command's output and exit. */
async function runToEnd (ch: FrameChannel): Promise<{ out: string, code: number | undefined }> {
  await ch.send({ t: 'go' })
  let out = ''
  for (;;) {
    const m: any = await ch.recv()
    if (m === undefined) return { out, code: undefined }
    if (m.t === 'out') out += Buffer.from(m.data).toString()
    if (m.t === 'exit') { ch.destroy(); return { out, code: m.code } }
    if (m.t === 'error') throw new Error(m.error.message)
  }
}

const gpusFree = (): number[] | undefined => agent.grid.view().find((p) => p.self)?.load.gpusFree
const allFree = async (what: string, ms = 5_000): Promise<void> => {
  await waitFor(() => gpusFree()?.length === 2, what, ms, 20)
}

describe('claims', () => {
  it('grants exactly 2 of 20 concurrent claims for its 2 GPUs, on different GPUs', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, async () => await claim()))
    const held = answers.filter((a) => a.answer?.t === 'claimed')
    const refused = answers.filter((a) => a.answer?.t === 'error')
    expect(held).toHaveLength(2)
    expect(refused).toHaveLength(18)
    for (const r of refused) expect(r.answer.error.code).toBe('ERR_NO_CAPACITY')
    for (const r of refused) r.ch.destroy()
    expect(held[0].answer.leaseMs).toBe(CLAIM_LEASE_MS)
    const runs = await Promise.all(held.map(async (h) => await runToEnd(h.ch)))
    expect(runs.map((r) => r.code)).toEqual([0, 0])
    expect(runs.map((r) => r.out.trim()).sort()).toEqual(['0', '1'])
    await allFree('the GPUs to come back after the commands ended')
  })

  it('frees a claim at once when it is released, or when its submitter goes away', async () => {
    const a = await claim(spec({ gpus: 2, argv: ['sh', '-c', 'echo ran'] }))
    expect(a.answer.t).toBe('claimed')
    await waitFor(() => gpusFree()?.length === 0, 'the advertisement to show the GPUs held')
    expect((await claim()).answer).toMatchObject({ t: 'error', error: { code: 'ERR_NO_CAPACITY' } })
    await a.ch.send({ t: 'release' })
    await allFree('a released claim to free its GPUs')
    // The released command never ran: the stream ends with nothing but the end.
    expect(await a.ch.recv().catch(() => undefined)).toBeUndefined()

    const b = await claim(spec({ gpus: 2 }))
    expect(b.answer.t).toBe('claimed')
    b.ch.destroy()
    await allFree('a claim whose submitter vanished to be freed')
  })

  it('frees a claim nobody answers when its lease runs out', async () => {
    const t0 = Date.now()
    const a = await claim(spec({ gpus: 2 }))
    expect(a.answer.t).toBe('claimed')
    expect(gpusFree()).toEqual([])
    await allFree('the lease to run out', CLAIM_LEASE_MS + 5_000)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(CLAIM_LEASE_MS - 100)
    a.ch.destroy()
  }, CLAIM_LEASE_MS + 10_000)
})
