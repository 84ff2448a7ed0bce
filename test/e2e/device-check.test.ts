/**
 * scripts/device-check.sh, the one device call of issue 19 (item 6), must work the day a
 * session is lent the GPU machine: here, with a fake nvidia-smi on PATH, its two agents show
 * the GPU in `vgrid peers`, and its `vrun --gpus 1` command is given that GPU.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '../helpers/procs.js'
import { fakeGpuPath } from '../helpers/fake-gpus.js'

describe('scripts/device-check.sh', () => {
  it('shows the GPU in vgrid peers and hands it to a vrun --gpus 1 command, all in $OUT', { timeout: 120_000 }, () => {
    const out = tempDir()
    const r = spawnSync('bash', [path.join(import.meta.dirname, '../../scripts/device-check.sh')], {
      env: { ...process.env, ...fakeGpuPath('H100 80GB HBM3:81559'), OUT: out, BENCHES: '0' },
      encoding: 'utf8',
      timeout: 110_000
    })
    expect(r.status, r.stderr).toBe(0)
    const text = fs.readFileSync(path.join(out, 'device-check.txt'), 'utf8')
    expect(text).toMatch(/1×H100 80GB HBM3 \(1 free\)/)
    expect(text).toContain('CUDA_VISIBLE_DEVICES=0')
    const peers = JSON.parse(fs.readFileSync(path.join(out, 'peers.json'), 'utf8')) as { peers: Array<{ resources: { gpus: Array<{ model: string }> } }> }
    expect(peers.peers).toHaveLength(2)
    for (const p of peers.peers) expect(p.resources.gpus.map((g) => g.model)).toEqual(['H100 80GB HBM3'])
  })
})
