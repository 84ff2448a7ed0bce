/**
 * Issue 15 §5: the agent's home is 0700 and its keys 0600 at every start, also a home that
 * already existed with modes that let other users of the machine read the grid's secret.
 */
import fs from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { startAgent } from '../../src/agent/agent.js'
import { resolveAgentConfig } from '../../src/agent/config.js'
import { createSwarmKey, writeSwarmKey } from '../../src/grid/index.js'
import { tempDir } from '../helpers/procs.js'

const mode = (p: string): number => fs.statSync(p).mode & 0o777

it('tightens a home that other users could read, keys included, at start', async () => {
  const home = tempDir()
  fs.chmodSync(home, 0o755)
  await writeSwarmKey(home, createSwarmKey())
  fs.chmodSync(path.join(home, 'swarm.key'), 0o644)
  fs.mkdirSync(path.join(home, 'store'), { mode: 0o755 })
  fs.chmodSync(path.join(home, 'store'), 0o755)
  const agent = await startAgent(resolveAgentConfig({ listen: '/ip4/127.0.0.1/tcp/0', http: 'off' }, { VGRID_HOME: home }))
  try {
    expect(mode(home)).toBe(0o700)
    expect(mode(path.join(home, 'swarm.key'))).toBe(0o600)
    expect(mode(path.join(home, 'identity.key'))).toBe(0o600)
    expect(mode(path.join(home, 'store'))).toBe(0o700)
  } finally {
    await agent.stop()
  }
})
