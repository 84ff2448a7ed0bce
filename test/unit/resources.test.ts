/**
 * One request, one set of limits, one match: what the CLI accepts, the wire accepts, an agent may
 * lend, an advertisement may carry, and the ledger and placement agree on whether it fits.
 */
import { describe, it, expect } from 'vitest'
import { MAX_CPUS, MAX_GPUS, MAX_GPU_INDEX, matches, policyMismatch, gpuMatches, type ResourceRequest } from '../../src/common/resources.js'
import { parseRunSpec, type RunSpec } from '../../src/protocol/session.js'
import { parseVrunArgs } from '../../src/cli/vrun-args.js'
import { resolveAgentConfig, policyPatch } from '../../src/agent/config.js'
import { parsePeerAd } from '../../src/protocol/advert.js'
import { Ledger } from '../../src/exec/ledger.js'
import { fitsEver } from '../../src/grid/placement.js'
import type { PeerView } from '../../src/grid/types.js'
import { fakeDescription } from '../grid/harness.js'

/** The spec `vrun ARGS` would send. */
function cli (...args: string[]): RunSpec {
  const inv = parseVrunArgs([...args, 'true'], {})
  if (inv.kind !== 'run') throw new Error(`not a run: ${inv.kind}`)
  return inv.spec
}

const ID = '12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhDNvACmtdShCxFnpzCRw8'

describe('the limits of a request are the same everywhere', () => {
  it('cores: the CLI, the wire, the config and an advertisement take MAX_CPUS and refuse one more', () => {
    expect(cli('--cpus', String(MAX_CPUS)).cpus).toBe(MAX_CPUS)
    expect(() => cli('--cpus', String(MAX_CPUS + 1))).toThrow()
    expect(parseRunSpec({ argv: ['true'], cpus: MAX_CPUS }).cpus).toBe(MAX_CPUS)
    expect(() => parseRunSpec({ argv: ['true'], cpus: MAX_CPUS + 1 })).toThrow(/cpus/)
    expect(policyPatch({ cpus: String(MAX_CPUS) }).cpus).toBe(MAX_CPUS)
    expect(() => policyPatch({ cpus: String(MAX_CPUS + 1) })).toThrow()
    expect(() => resolveAgentConfig({ cpus: String(MAX_CPUS + 1) }, { VGRID_HOME: '/nonexistent-vgrid-home' })).toThrow()
    const d = fakeDescription('big')
    d.resources.cpu.cores = MAX_CPUS
    d.offer.cpus = MAX_CPUS
    const ad = { v: 1, peer: ID, seq: 1, startedAt: 1, addrs: [], version: '0.1.0', ...d }
    expect(parsePeerAd(ad).offer.cpus).toBe(MAX_CPUS)
    expect(() => parsePeerAd({ ...ad, offer: { ...ad.offer, cpus: MAX_CPUS + 1 } })).toThrow()
  })

  it('GPUs: the CLI and the wire take MAX_GPUS, an advertisement MAX_GPUS of index up to MAX_GPU_INDEX', () => {
    expect(cli('--gpus', String(MAX_GPUS)).gpus).toBe(MAX_GPUS)
    expect(() => cli('--gpus', String(MAX_GPUS + 1))).toThrow()
    expect(parseRunSpec({ argv: ['true'], gpus: MAX_GPUS }).gpus).toBe(MAX_GPUS)
    expect(() => parseRunSpec({ argv: ['true'], gpus: MAX_GPUS + 1 })).toThrow(/gpus/)
    const d = fakeDescription('gpus')
    d.resources.gpus = Array.from({ length: MAX_GPUS }, (_, i) => ({ index: MAX_GPU_INDEX - i, vendor: 'nvidia', model: 'A100', memoryBytes: 2 ** 30 }))
    d.offer.gpus = d.resources.gpus.map((g) => g.index)
    d.load.gpusFree = d.offer.gpus
    const ad = { v: 1, peer: ID, seq: 1, startedAt: 1, addrs: [], version: '0.1.0', ...d }
    expect(parsePeerAd(ad).resources.gpus).toHaveLength(MAX_GPUS)
    expect(policyPatch({ gpus: String(MAX_GPU_INDEX) }).gpus).toEqual([MAX_GPU_INDEX])
  })
})

describe('one match of pools, labels and GPUs', () => {
  const offers: Array<{ pools: string[], labels: Record<string, string> }> = [
    { pools: [], labels: {} },
    { pools: ['lab'], labels: { rack: 'r1' } },
    { pools: ['lab', 'gpu'], labels: { rack: 'r2', os: 'debian' } }
  ]
  const requests: ResourceRequest[] = [
    { cpus: 1, gpus: 0 },
    { cpus: 1, gpus: 0, pool: 'lab' },
    { cpus: 1, gpus: 0, pool: 'gpu', labels: { rack: 'r2' } },
    { cpus: 1, gpus: 0, labels: { rack: 'r1' } },
    { cpus: 1, gpus: 0, labels: { os: 'debian', rack: 'r1' } },
    { cpus: 1, gpus: 1, gpuModel: 'a100' },
    { cpus: 1, gpus: 1, gpuModel: 'H100', gpuMemBytes: 2 ** 36 }
  ]
  const gpus = [{ index: 0, vendor: 'nvidia', model: 'NVIDIA A100-SXM4-80GB', memoryBytes: 80 * 2 ** 30 }]

  it('the executor\'s ledger and the submitter\'s placement decide alike', () => {
    for (const o of offers) {
      const ledger = new Ledger({ cpus: 4, memBytes: 2 ** 34, gpus, ...o })
      const d = fakeDescription('m')
      d.resources.gpus = gpus
      const p: PeerView = { v: 1, peer: ID, seq: 1, startedAt: 1, addrs: [], version: '0.1.0', ...d, offer: { cpus: 4, memBytes: 2 ** 34, gpus: [0], ...o }, lastSeenMs: 0, self: false }
      for (const r of requests) {
        const what = `${JSON.stringify(r)} on ${JSON.stringify(o)}`
        expect(fitsEver(p, r), what).toBe(ledger.fitsEver(r))
        expect(matches(o, r), what).toBe(policyMismatch(o, r) === undefined)
      }
    }
  })

  it('says why a member does not match', () => {
    expect(policyMismatch({ pools: [] }, { cpus: 1, gpus: 0, pool: 'lab' })).toBe('it is not in pool "lab" (it is in no pool)')
    expect(policyMismatch({ pools: ['a'], labels: { rack: 'r1' } }, { cpus: 1, gpus: 0, labels: { rack: 'r2' } })).toBe('it is not labelled rack=r2')
    expect(gpuMatches(gpus[0]!, { cpus: 1, gpus: 1, gpuModel: 'a100' })).toBe(true)
    expect(gpuMatches(gpus[0]!, { cpus: 1, gpus: 1, gpuMemBytes: 81 * 2 ** 30 })).toBe(false)
  })
})
