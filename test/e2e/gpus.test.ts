/**
 * Resource requests end to end, through the real `vrun` on a grid of four real agents whose
 * GPUs come from the fake nvidia-smi: a box with none (in pool "render"), one with one GPU, one
 * with two of different models (labelled room=b12) and one with eight of three kinds. What the
 * command sees in CUDA_VISIBLE_DEVICES, and on which box it runs, is what a user would check.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startAgent, startCli, stopAll, peersOf, waitFor, sharedDir, guestShare, type AgentProc } from '../helpers/procs.js'
import { fakeGpuPath } from '../helpers/fake-gpus.js'

const BOXES = {
  none: '',
  one: 'NVIDIA GeForce RTX 4090:24564',
  two: 'NVIDIA A100-SXM4-40GB:40960,NVIDIA GeForce RTX 3090:24576',
  eight: [
    ...Array<string>(4).fill('NVIDIA A100-SXM4-80GB:81920'),
    ...Array<string>(2).fill('Tesla V100-SXM2-16GB:16384'),
    ...Array<string>(2).fill('NVIDIA L4:23034')
  ].join(',')
}

let none: AgentProc
let one: AgentProc
let two: AgentProc
let eight: AgentProc
let homes: Map<string, string>

/** Prints the GPUs the command was given, then the executing agent's peer id. */
const SHOW = ['sh', '-c', 'echo "$CUDA_VISIBLE_DEVICES"; echo "$VGRID_PEER"']

async function where (from: AgentProc, args: string[]): Promise<{ box: string, gpus: string }> {
  const r = await from.vrun(['--no-sync', ...args, ...SHOW])
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
  const [gpus, home] = r.stdout.split('\n')
  return { box: homes.get(home!) ?? `unknown member ${home}`, gpus: gpus! }
}

/** Where the tests' commands leave and find their `go` files and logs, shared with the guests. */
let share: string

/** A directory of the share for one test. */
function shared (name: string): string {
  const dir = path.join(share, name)
  fs.mkdirSync(dir, { mode: 0o777 })
  fs.chmodSync(dir, 0o777)
  return dir
}

beforeAll(async () => {
  share = sharedDir()
  none = await startAgent({ env: fakeGpuPath(BOXES.none), args: ['--pool', 'render', ...guestShare(share)] })
  ;[one, two, eight] = await Promise.all([
    startAgent({ join: none.token, env: fakeGpuPath(BOXES.one), args: guestShare(share) }),
    startAgent({ join: none.token, env: fakeGpuPath(BOXES.two), args: ['--label', 'room=b12', ...guestShare(share)] }),
    startAgent({ join: none.token, env: fakeGpuPath(BOXES.eight), args: guestShare(share) })
  ])
  homes = new Map([[none.peer, 'none'], [one.peer, 'one'], [two.peer, 'two'], [eight.peer, 'eight']])
  const all = [none, one, two, eight]
  await Promise.all(all.map(async (a) => await waitFor(async () => {
    const peers = await peersOf(a)
    return peers.length === 4 && peers.every((p) => p.load.gpusFree.length === p.offer.gpus.length)
  }, `4 members with their GPUs in the view of ${a.peer}`, 20_000, 100)))
}, 60_000)

afterAll(async () => { await stopAll() })

describe('GPUs handed out by vrun', () => {
  it('vrun -P gpu-1 sees exactly one GPU index of a box that has GPUs', async () => {
    const r = await none.vrun(['--no-sync', '-P', 'gpu-1', 'sh', '-c', 'echo $CUDA_VISIBLE_DEVICES'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^\d\n$/)
    const { box, gpus } = await where(none, ['-P', 'gpu-1'])
    expect(['one', 'two', 'eight']).toContain(box)
    expect(Number(gpus)).toBeLessThan(BOXES[box as keyof typeof BOXES].split(',').length)
  })

  it('sends --gpu-model, -P gpu-MODEL-N and --gpu-mem to the box that has such GPUs', async () => {
    expect(await where(none, ['--gpus', '1', '--gpu-model', '4090'])).toEqual({ box: 'one', gpus: '0' })
    expect(await where(none, ['--gpus', '1', '--gpu-model', 'RTX 3090'])).toEqual({ box: 'two', gpus: '1' })
    // The two-GPU box has one A100: two of them are only on the eight-GPU box (indexes 0-3).
    const pair = await where(one, ['-P', 'gpu-a100-2'])
    expect(pair.box).toBe('eight')
    expect(pair.gpus).toMatch(/^[0-3],[0-3]$/)
    // 64 GiB or more: only the A100-80GBs, not the V100s or L4s of the same box.
    const big = await where(two, ['--gpus', '1', '--gpu-mem', '64G'])
    expect(big.box).toBe('eight')
    expect(big.gpus).toMatch(/^[0-3]$/)
    expect(await where(none, ['--gpus', '1', '--gpu-model', 'a100', '--gpu-mem', '40G', '--label', 'room=b12'])).toEqual({ box: 'two', gpus: '0' })
    // A command that asked for no GPU sees none, even on a GPU box.
    expect((await where(eight, ['--on', eight.peer])).gpus).toBe('')
  })

  it('fails at once, naming the largest member, when no member has 9 GPUs', async () => {
    const t0 = Date.now()
    const r = await one.vrun(['--no-sync', '--gpus', '9', 'true'])
    expect(r.code).toBe(255)
    expect(r.stderr).toContain('no member of the grid could ever run a command that needs 1 core and 9 GPUs')
    expect(r.stderr).toMatch(/the largest member, \S+, lends \d+ cores?, .* of memory and 8 GPUs \(4× NVIDIA A100-SXM4-80GB with 80 GiB, 2× Tesla V100-SXM2-16GB with 16 GiB, 2× NVIDIA L4 with 22.5 GiB\)/)
    // a request no member could ever meet is refused, not queued: a queued vrun would wait past the CLI's bound
    console.log(`refused in ${Date.now() - t0} ms`)
    const mem = await one.vrun(['--no-sync', '--gpus', '1', '--gpu-mem', '96G', 'true'])
    expect(mem.code).toBe(255)
    expect(mem.stderr).toContain('needs 1 core and 1 GPU with at least 96 GiB')
    const ram = await one.vrun(['--no-sync', '--mem', '1P', 'true'])
    expect(ram.code).toBe(255)
    expect(ram.stderr).toContain('needs 1 core and 1 PiB of memory')
  })

  it('lands in the pool -P names, and on members with the --label asked for', async () => {
    expect((await where(eight, ['-P', 'render'])).box).toBe('none')
    expect((await where(one, ['--label', 'room=b12'])).box).toBe('two')
    const nopool = await one.vrun(['--no-sync', '-P', 'nosuchpool', 'true'])
    expect(nopool.code).toBe(255)
    expect(nopool.stderr).toContain('no member of the grid is in pool "nosuchpool": the grid\'s pools are render')
    const gpuInPool = await one.vrun(['--no-sync', '-P', 'render', '-P', 'gpu-1', 'true'])
    expect(gpuInPool.code).toBe(255)
    expect(gpuInPool.stderr).toContain('the largest member in pool "render"')
  })

  it('never gives the one-GPU box\'s GPU to two commands at once: the second waits for it', async () => {
    const dir = shared('gpu-lock')
    const log = path.join(dir, 'log')
    const go = path.join(dir, 'go')
    // Each command notes when it has the GPU and when it lets go; the first holds it until `go` exists.
    const script = `echo "start $CUDA_VISIBLE_DEVICES" >> ${log}; echo "$CUDA_VISIBLE_DEVICES"; ` +
      `while [ ! -e ${go} ]; do sleep 0.05; done; echo "end $CUDA_VISIBLE_DEVICES" >> ${log}`
    const args = ['--no-sync', '--gpus', '1', '--gpu-model', '4090', 'sh', '-c', script]
    const env = { VGRID_VERBOSE: '1' }
    const runs = [none, two].map((a) => startCli('vrun', args, { home: a.home, cwd: a.workspace, env, timeoutMs: 40_000 }))
    const [first, second] = await waitFor(() => {
      const started = runs.filter((r) => r.stdout() !== '')
      const waiting = runs.filter((r) => r.stderr().includes('waiting:'))
      return started.length === 1 && waiting.length === 1 && started[0] !== waiting[0] ? [started[0]!, waiting[0]!] : undefined
    }, 'one command to hold the GPU and the other to wait', 20_000)
    expect(first.stdout()).toBe('0\n')
    expect(second.stdout()).toBe('')
    expect(fs.readFileSync(log, 'utf8')).toBe('start 0\n')
    fs.writeFileSync(go, '')
    const [a, b] = await Promise.all(runs.map(async (r) => await r.done))
    expect([a!.code, b!.code]).toEqual([0, 0])
    expect(second.stdout()).toBe('0\n')
    expect(fs.readFileSync(log, 'utf8')).toBe('start 0\nend 0\nstart 0\nend 0\n')
    // Released however it ended: the box shows its GPU free again.
    await waitFor(async () => (await peersOf(none)).find((p) => p.peer === one.peer)?.load.gpusFree.length === 1, 'the GPU to be free again', 5_000)
  })

  it('vgrid peers shows, from any member, which GPU runs which task for whom', async () => {
    const dir = shared('gpu-use')
    const go = path.join(dir, 'go')
    const run = startCli('vrun', ['--no-sync', '--gpus', '2', '--gpu-model', 'a100-sxm4-80', 'sh', '-c', `echo held; while [ ! -e ${go} ]; do sleep 0.05; done`],
      { home: none.home, cwd: none.workspace, timeoutMs: 40_000 })
    await waitFor(() => run.stdout().includes('held'), 'the command to hold its GPUs', 20_000)
    const table = await waitFor(async () => {
      const r = await two.vgrid(['peers'])
      return /\[1\].*[0-9a-f]{16}/.test(r.stdout) ? r.stdout : undefined
    }, 'vgrid peers to show the GPUs in use', 5_000, 100)
    const rows = table.split('\n').filter((l) => /\[\d\]  +A100-SXM4-80GB/.test(l))
    // The eight-GPU box lends four A100 80GB: the command holds the lowest two, for its submitter.
    expect(rows).toHaveLength(4)
    const busy = rows.filter((l) => /[0-9a-f]{16}/.test(l))
    expect(busy.map((l) => /\[(\d)\]/.exec(l)?.[1])).toEqual(['0', '1'])
    for (const l of busy) expect(l).toMatch(new RegExp(`[0-9a-f]{16}  ${os.userInfo().username}@${os.hostname()}$`))
    expect(rows.filter((l) => / free$/.test(l))).toHaveLength(2)
    fs.writeFileSync(go, '')
    expect((await run.done).code).toBe(0)
    await waitFor(async () => !/[0-9a-f]{16}  \S+@/.test((await two.vgrid(['peers'])).stdout), 'the GPUs to show free again', 5_000, 100)
  })
})
