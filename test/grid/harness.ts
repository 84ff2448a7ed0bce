/**
 * Builds grids of real libp2p nodes on 127.0.0.1 for the tests, each member with its own
 * temporary VGRID_HOME, and tears everything down after each test.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { startNode, type GridNode } from '../../src/grid/node.js'
import { createGrid, createSwarmKey, loadOrCreateIdentity, type Grid, type PeerAd } from '../../src/grid/index.js'

export const LOOPBACK = '/ip4/127.0.0.1/tcp/0'

export function fakeDescription (host: string): Pick<PeerAd, 'resources' | 'offer' | 'load'> {
  return {
    resources: {
      host,
      os: { platform: 'linux', distro: 'Test', release: '1', arch: 'x64' },
      cpu: { model: 'Test CPU', cores: 8 },
      memBytes: 16 * 2 ** 30,
      gpus: []
    },
    offer: { cpus: 8, memBytes: 16 * 2 ** 30, gpus: [], pools: [], labels: {} },
    load: { cpusFree: 8, memFree: 16 * 2 ** 30, gpusFree: [], running: 0, queued: 0, cpuUtil: 3 }
  }
}

export interface StartOptions {
  bootstrap?: string[]
  swarmKey?: Uint8Array
  host?: string
  /** Reuse a home (same identity): a restart. */
  home?: string
  /** Defaults to 127.0.0.1, port chosen by the system. */
  listen?: string
  describe?: () => Pick<PeerAd, 'resources' | 'offer' | 'load'>
  /** Receives the grid's warnings (a member vanished, fell silent, is graylisted). */
  onWarning?: (msg: string) => void
  /** Its refresh interval (GridInit.advertEveryMs). */
  advertEveryMs?: number
}

export class Harness {
  readonly grids: Grid[] = []
  readonly raws: GridNode[] = []
  private readonly dirs: string[] = []
  readonly swarmKey = createSwarmKey()
  private count = 0

  async home (): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'vgrid-grid-test-'))
    this.dirs.push(dir)
    return dir
  }

  /** Starts a member; `bootstrap` defaults to none (a new grid). */
  async start (opts: StartOptions = {}): Promise<Grid> {
    const home = opts.home ?? await this.home()
    const host = opts.host ?? `host-${this.count++}`
    const grid = await createGrid({
      privateKey: await loadOrCreateIdentity(home),
      swarmKey: opts.swarmKey ?? this.swarmKey,
      listen: [opts.listen ?? LOOPBACK],
      bootstrap: opts.bootstrap ?? [],
      version: '0.0.0-test',
      startedAt: Date.now(),
      describe: opts.describe ?? (() => fakeDescription(host)),
      onWarning: opts.onWarning,
      ...(opts.advertEveryMs !== undefined ? { advertEveryMs: opts.advertEveryMs } : {})
    })
    this.grids.push(grid)
    return grid
  }

  /** A raw node (see rawNode), stopped with the rest. */
  async raw (swarmKey: Uint8Array = this.swarmKey): Promise<GridNode> {
    const node = await rawNode(swarmKey)
    this.raws.push(node)
    return node
  }

  async cleanup (): Promise<void> {
    await Promise.allSettled(this.grids.splice(0).map(async (g) => { await g.stop() }))
    await Promise.allSettled(this.raws.splice(0).map(async (n) => { await n.stop() }))
    await Promise.allSettled(this.dirs.splice(0).map(async (d) => { await rm(d, { recursive: true, force: true }) }))
  }
}

/** Peer ids in a grid's view, self included. */
export function members (grid: Grid): string[] {
  return grid.view().map((p) => p.peer).sort()
}

/**
 * A bare libp2p node with the grid's stack but none of its rules: it can publish anything on
 * the topic, or carry the wrong swarm key.
 */
export async function rawNode (swarmKey: Uint8Array): Promise<GridNode> {
  return await startNode({ privateKey: await generateKeyPair('Ed25519'), swarmKey, listen: [LOOPBACK], version: '0.0.0-raw' })
}
