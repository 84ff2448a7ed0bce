/**
 * A raw grid node holding the grid's swarm key, for tests of what a member that sends
 * anything can do to an agent: it joins the agent's grid, lends `cpus` cores (0: it is never
 * chosen to run anything) and runs no agent code of ours.
 */
import type { Agent } from '../../src/agent/agent.js'
import { createGrid, loadSwarmKey, loadOrCreateIdentity, type Grid } from '../../src/grid/index.js'
import { tempDir, waitFor } from './procs.js'

export async function startHostileMember (agent: Agent, agentHome: string, cpus = 0): Promise<Grid> {
  const member = await createGrid({
    privateKey: await loadOrCreateIdentity(tempDir()),
    swarmKey: (await loadSwarmKey(agentHome))!,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: agent.grid.addrs(),
    version: 'hostile',
    startedAt: Date.now(),
    describe: () => ({
      resources: { host: 'hostile', os: { platform: 'linux', distro: 'x', release: 'x', arch: 'x64' }, cpu: { model: 'x', cores: Math.max(1, cpus) }, memBytes: 2 ** 30, gpus: [] },
      offer: { cpus, memBytes: cpus > 0 ? 2 ** 30 : 0, gpus: [], pools: [], labels: {} },
      load: { cpusFree: cpus, memFree: cpus > 0 ? 2 ** 30 : 0, gpusFree: [], running: 0, queued: 0, cpuUtil: 0 }
    })
  })
  await waitFor(() => agent.grid.view().some((p) => p.peer === member.peerId), 'the hostile member to join')
  return member
}
