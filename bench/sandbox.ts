/**
 * Issue 15's figure: what the sandbox adds to a guest's start. `vrun --on REMOTE true` on a
 * member that sandboxes its guests and on one that runs them unconfined (`--isolation
 * none`), the two interleaved in one run (medians of 40), with and without a synced
 * workspace; the difference may be at most 10 ms. Also the sandbox alone: the same bwrap
 * command line the agent builds, against `true`.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { startAgent, stopAll, waitFor, tempDir, BIN } from '../test/helpers/procs.js'
import { median, timeCommand } from './stats.js'
import { sandboxed } from '../src/exec/sandbox.js'
import { detectIsolation } from '../src/agent/isolation.js'
import { defaultLauncher } from '../src/exec/launcher.js'
import { startLine } from '../src/exec/niceness.js'
import { DEFAULT_NICE } from '../src/agent/config.js'
import type { Figure } from './grid-vrun.js'

/** Spawns `file argv…` as the executor does (a process group of its own, piped stdio) and times it to its end. */
async function timeSpawn (file: string, argv: string[]): Promise<number> {
  const t0 = process.hrtime.bigint()
  await new Promise<void>((resolve, reject) => {
    const child = spawn(file, argv.slice(1), { argv0: argv[0], detached: true, stdio: ['pipe', 'pipe', 'pipe'] })
    child.on('error', reject)
    child.on('close', () => { resolve() })
  })
  return Number(process.hrtime.bigint() - t0) / 1e6
}

/**
 * The very command line a guest's `true` gets on this machine (without the agent around it),
 * pinned to one core; `dir` holds its directories.
 */
async function guestTrue (dir: string): Promise<{ cmd: (core: number) => { file: string, argv: string[] }, taskset?: string }> {
  const iso = await detectIsolation({ mode: 'sandbox', net: true }, path.join(dir, 'home'))
  if (iso.kind !== 'sandbox') throw new Error(`no sandbox here: ${iso.kind === 'unavailable' ? iso.why : iso.kind}`)
  for (const d of ['ws', 'home/bin', 'tmp', 'bin']) fs.mkdirSync(path.join(dir, d), { recursive: true })
  const sb = {
    ...iso.base,
    workspace: { host: path.join(dir, 'ws'), guest: '/home/alice/proj' },
    cwd: '/home/alice/proj',
    taskHome: { host: path.join(dir, 'home'), guest: '/run/vgrid' },
    commands: { host: path.join(dir, 'bin'), guest: '/run/vgrid/bin' },
    tmp: path.join(dir, 'tmp'),
    devices: []
  }
  return { cmd: (core) => sandboxed({ ...sb, cores: [core] }, '/usr/bin/true', ['true']), ...(sb.tools.taskset !== undefined ? { taskset: sb.tools.taskset } : {}) }
}

/**
 * The floor: the very command line a guest's `true` gets (without the agent around it),
 * against a plain spawn of `true`, interleaved.
 */
async function sandboxFloor (): Promise<{ plain: number[], boxed: number[] }> {
  const cmd = (await guestTrue(tempDir('vgrid-bench-sandbox-'))).cmd(0)
  const plain: number[] = []
  const boxed: number[] = []
  for (let i = 0; i < RUNS; i++) {
    plain.push(await timeSpawn('/usr/bin/true', ['true']))
    boxed.push(await timeSpawn(cmd.file, cmd.argv))
  }
  return { plain, boxed }
}

/** Busy and total CPU time of the whole machine so far, in clock ticks (/proc/stat). */
function machineTicks (): { busy: number, total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const total = f.reduce((a, b) => a + b, 0)
  return { busy: total - f[3]! - f[4]!, total }
}

/**
 * The ceiling of a fan-out of `true` on this machine: `n` guests' sandboxes started with
 * nothing else around them, `parallel` at a time, spread over the cores as the agent pins
 * them at its default niceness, from the agent's own launcher. Starts per second, and the machine's CPU time per start (the kernel's share
 * included: setting up and tearing down the namespaces and mounts is most of it).
 */
export async function sandboxRate (n: number, parallel: number): Promise<{ perS: number, cpuMs: number }> {
  const dir = tempDir('vgrid-bench-sandbox-')
  const guest = await guestTrue(dir)
  const cores = os.availableParallelism()
  // started as the agent starts its commands (exec/launcher.ts), where it can
  const launcher = defaultLauncher()
  let next = 0
  const m0 = machineTicks()
  const t0 = performance.now()
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < n) {
      // at the agent's default niceness, pinned to one core, as a fan-out's guests start
      const core = next++ % cores
      const opts = { ...guest.cmd(core), nice: DEFAULT_NICE, pin: { cores: [core], ...(guest.taskset !== undefined ? { taskset: guest.taskset } : {}) } }
      if (launcher === undefined) {
        const line = startLine(opts)
        await timeSpawn(line.file, line.argv)
        continue
      }
      const started = await launcher.start({ ...opts, cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }, ['/dev/null', '/dev/null', '/dev/null'])
      await started.status
    }
  }))
  const s = (performance.now() - t0) / 1000
  const m1 = machineTicks()
  const tick = 1000 / 100 // USER_HZ
  return { perS: n / s, cpuMs: (m1.busy - m0.busy) * tick / n }
}

const RUNS = 40
const TARGET_MS = 10

export async function benchSandbox (): Promise<Figure[]> {
  const a = await startAgent({ args: ['--cpus', '1'] })
  const [boxed, open] = await Promise.all([
    startAgent({ join: a.token }),
    startAgent({ join: a.token, args: ['--isolation', 'none'] })
  ])
  try {
    await waitFor(async () => (await a.vgrid(['peers', '--json'])).stdout.split('"peer"').length === 4, 'three members', 20_000, 100)
    const env = { ...process.env, VGRID_HOME: a.home }
    const time = async (on: string, sync: boolean): Promise<number> =>
      await timeCommand(process.execPath, [BIN.vrun, ...(sync ? [] : ['--no-sync']), '--on', on, 'true'], env, a.workspace)
    for (const on of [boxed.peer, open.peer]) { await time(on, true); await time(on, false) }
    const t = { boxed: [] as number[], open: [] as number[], boxedSync: [] as number[], openSync: [] as number[] }
    for (let i = 0; i < RUNS; i++) {
      // interleaved: a slow moment of this shared machine hits both sides alike
      t.boxed.push(await time(boxed.peer, false))
      t.open.push(await time(open.peer, false))
      t.boxedSync.push(await time(boxed.peer, true))
      t.openSync.push(await time(open.peer, true))
    }
    const floor = await sandboxFloor()
    const ms = (x: number): number => Math.round(x * 10) / 10
    const added = median(t.boxed) - median(t.open)
    const addedSync = median(t.boxedSync) - median(t.openSync)
    return [
      { name: `vrun --no-sync --on REMOTE true, sandboxed, median of ${RUNS}`, value: ms(median(t.boxed)), unit: 'ms' },
      { name: `vrun --no-sync --on REMOTE true, --isolation none, median of ${RUNS}`, value: ms(median(t.open)), unit: 'ms' },
      { name: 'added by the sandbox (no sync)', value: ms(added), unit: 'ms', target: `<= ${TARGET_MS}`, ok: added <= TARGET_MS },
      { name: `vrun --on REMOTE true (empty workspace), sandboxed, median of ${RUNS}`, value: ms(median(t.boxedSync)), unit: 'ms' },
      { name: `vrun --on REMOTE true (empty workspace), --isolation none, median of ${RUNS}`, value: ms(median(t.openSync)), unit: 'ms' },
      { name: 'added by the sandbox (empty workspace synced)', value: ms(addedSync), unit: 'ms', target: `<= ${TARGET_MS}`, ok: addedSync <= TARGET_MS },
      { name: `floor: spawn of true, median of ${RUNS}`, value: ms(median(floor.plain)), unit: 'ms' },
      { name: `floor: the same true in the guest's sandbox command line, median of ${RUNS}`, value: ms(median(floor.boxed)), unit: 'ms' },
      { name: 'floor: added by bwrap and its helpers alone', value: ms(median(floor.boxed) - median(floor.plain)), unit: 'ms' }
    ]
  } finally {
    await stopAll()
  }
}
