/**
 * The scripts in examples/ run against a real two-agent grid with `vrun`, `vbatch` and
 * `vgrid` on PATH (as `npm link` puts them), so they cannot go stale. The grid is the README's
 * and the seeds': one member started as the README starts a CPU box (`--gpus none --pool
 * cpu-boxes --label room=b12`), one with eight A100s from the fake nvidia-smi, for the Velda
 * docs' `-P gpu-a100-8`.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { peersOf, runCli, sharedDir, startAgent, stopAll, tempDir, waitFor, BIN, ROOT, type AgentProc } from '../helpers/procs.js'
import { fakeGpuPath } from '../helpers/fake-gpus.js'

/** The README's CPU box. */
let a: AgentProc
/** Eight A100s. */
let b: AgentProc
let binDir: string
/** A directory holding a `python`, on the PATH of the members and the examples. */
let py: string

beforeAll(async () => {
  // The docs run `python`; a Debian machine has only python3 unless python-is-python3 is
  // installed: a `python` for the members' guests, in a directory they are shown (a
  // command's PATH is its submitter's).
  py = sharedDir('vgrid-python-')
  fs.writeFileSync(path.join(py, 'python'), '#!/bin/sh\nexec python3 "$@"\n', { mode: 0o755 })
  const PATH = `${py}:${process.env.PATH ?? ''}`
  a = await startAgent({ env: { PATH }, args: ['--gpus', 'none', '--pool', 'cpu-boxes', '--label', 'room=b12', '--guest-share', py] })
  b = await startAgent({ join: a.token, env: fakeGpuPath(Array<string>(8).fill('NVIDIA A100-SXM4-80GB:81920').join(','), PATH), args: ['--guest-share', py] })
  await Promise.all([a, b].map(async (m) => await waitFor(async () => {
    const peers = await peersOf(m)
    return peers.length === 2 && peers.some((p) => p.offer.gpus.length === 8)
  }, `2 members, 8 GPUs among them, in the view of ${m.peer}`, 20_000, 100)))
  binDir = tempDir('vgrid-bin-')
  for (const bin of ['vrun', 'vbatch', 'vgrid'] as const) fs.symlinkSync(BIN[bin], path.join(binDir, bin))
}, 60_000)
afterAll(async () => { await stopAll() })

async function example (name: string, args: string[] = [], timeout = 60_000): Promise<string> {
  const { stdout } = await promisify(execFile)(path.join(ROOT, 'examples', name), args, {
    cwd: a.workspace,
    env: { ...process.env, VGRID_HOME: a.home, PATH: `${binDir}:${py}:${process.env.PATH ?? ''}` },
    timeout,
    maxBuffer: 16 * 2 ** 20
  })
  return stdout
}

describe('examples/', () => {
  it('each-member.sh runs on every member', async () => {
    const out = await example('each-member.sh', ['sh', '-c', 'echo $VGRID_PEER'])
    const lines = out.trim().split('\n').sort()
    expect(lines).toEqual([`${a.peer.slice(0, 16)}: ${a.peer}`, `${b.peer.slice(0, 16)}: ${b.peer}`].sort())
  })

  it('fan-out.sh sums the squares computed on the grid', async () => {
    expect(await example('fan-out.sh')).toBe('sum of squares: 91\n')
  })

  it('pipe.sh streams stdin through a remote sort and reports the exit code', async () => {
    expect(await example('pipe.sh')).toBe('10000\n9999\n9998\nremote exit code: 3\n')
  })

  it('velda-seeds.sh runs every vrun and vbatch line of the seeds\' docs, -P gpu-a100 on the A100s', async () => {
    const out = await example('velda-seeds.sh', [], 300_000)
    const all = '0,1,2,3,4,5,6,7'
    // vrun -P gpu-a100-8, then vbatch -f -P gpu-a100-8: all eight, on the member that has them
    expect(out).toContain(`train.py on ${b.peer} gpus=${all}\ntrain.py on ${b.peer} gpus=${all}\n`)
    expect(out).toMatch(/^my_script\.py on 12D3\w+ gpus=$/m)
    expect(out).toMatch(/^my_long_running_script\.py on 12D3\w+ gpus=$/m)
    // the tasks of -N 10, the pipelines, the fan-outs: each one waited for, each succeeded
    expect(out).toContain('\n27 tasks succeeded\n')
    expect(out).toMatch(new RegExp(`^training: train\\.py on ${b.peer} gpus=[0-7]$`, 'm'))
  }, 320_000)
})

describe('-P shapes and pools through the real binaries', () => {
  const cli = (bin: 'vrun' | 'vbatch', args: string[]) => runCli(bin, args, { home: a.home, cwd: a.workspace, timeoutMs: 60_000 })
  const show = 'echo "$VGRID_PEER $CUDA_VISIBLE_DEVICES"'

  it('vrun -P gpu-a100 and vbatch -P gpu-a100 run on the member with A100s, one GPU each', async () => {
    const r = await cli('vrun', ['--no-sync', '-P', 'gpu-a100', 'sh', '-c', show])
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(new RegExp(`^${b.peer} [0-7]\n$`))
    const f = await cli('vbatch', ['-f', '--no-sync', '--name', 'training', '-P', 'gpu-a100', 'sh', '-c', show])
    expect(f.code).toBe(0)
    expect(f.stdout).toMatch(new RegExp(`^${b.peer} [0-7]\n$`))
  })

  it('-P cpu-boxes is the README\'s pool, on the member lending to it', async () => {
    const r = await cli('vrun', ['--no-sync', '-P', 'cpu-boxes', '-P', 'cpu-1', 'sh', '-c', show])
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe(`${a.peer} \n`)
    const f = await cli('vbatch', ['-f', '--no-sync', '-P', 'cpu-boxes', 'sh', '-c', show])
    expect(f.code).toBe(0)
    expect(f.stdout).toBe(`${a.peer} \n`)
  })

  it('a -P that names no pool of the grid says so and lists the pools there are', async () => {
    for (const bin of ['vrun', 'vbatch'] as const) {
      const r = await cli(bin, ['--no-sync', '-P', 'cpu-box', 'true'])
      expect(r.code, bin).toBe(255)
      expect(r.stderr, bin).toContain('no member of the grid is in pool "cpu-box": the grid\'s pools are cpu-boxes')
    }
  })

  it('an agent refuses a pool named exactly a shape, saying what -P would read', async () => {
    const r = await runCli('vgrid', ['agent', '--listen', '/ip4/127.0.0.1/tcp/0', '--pool', 'gpu-a100'], { home: tempDir(), timeoutMs: 30_000 })
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('--pool: "gpu-a100" is not valid: it is a resource shape (-P gpu-a100 asks for 1 GPU whose model contains "a100")')
  })
})
