/**
 * `--accept-from` against a raw member: the agent checks the peer id that the connection
 * authenticated, before any claim, whatever the request says of itself; a reload that adds
 * the member lets it in.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startAgent, type Agent } from '../../src/agent/agent.js'
import { resolveAgentConfig } from '../../src/agent/config.js'
import type { Grid } from '../../src/grid/index.js'
import { startHostileMember } from '../helpers/hostile-member.js'
import { EXEC_PROTOCOL, EXEC_PROTOCOL_VERSION } from '../../src/agent/constants.js'
import { tempDir } from '../helpers/procs.js'

const SOMEONE_ELSE = '12D3KooWMvBVSe685eBfT9D3eacBD7kePkeWDRxXMsuEsFfJU1xk'
let agent: Agent
let member: Grid
let home: string

beforeAll(async () => {
  home = tempDir()
  agent = await startAgent(resolveAgentConfig({ listen: '/ip4/127.0.0.1/tcp/0', http: 'off', acceptFrom: SOMEONE_ELSE }, { VGRID_HOME: home }))
  member = await startHostileMember(agent, home)
}, 30_000)

afterAll(async () => {
  await member?.stop()
  await agent?.stop()
})

/** The executor's first answer to an exec request. */
async function firstAnswer (): Promise<any> {
  const ch = await member.open(agent.grid.peerId, EXEC_PROTOCOL)
  try {
    await ch.send({ t: 'exec', v: EXEC_PROTOCOL_VERSION, task: '0123456789abcdef', user: 'alice', spec: { argv: ['true'], env: {}, cpus: 1, gpus: 0 } })
    return await ch.recv()
  } finally {
    ch.destroy()
  }
}

describe('--accept-from', () => {
  it('refuses a member not on the list before any claim, naming its proven peer id', async () => {
    const m = await firstAnswer()
    expect(m).toMatchObject({ t: 'error', error: { code: 'ERR_NOT_ALLOWED' } })
    expect(m.error.message).toContain(member.peerId)
    expect(agent.grid.view().find((p) => p.self)?.offer.acceptFrom).toEqual([SOMEONE_ELSE])
  })

  it('takes it once a reload adds it', async () => {
    agent.reload(resolveAgentConfig({ listen: '/ip4/127.0.0.1/tcp/0', http: 'off', acceptFrom: [SOMEONE_ELSE, member.peerId] }, { VGRID_HOME: home }))
    expect(await firstAnswer()).toMatchObject({ t: 'claimed' })
  })
})
