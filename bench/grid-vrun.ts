/**
 * Issue 2's figures on a two-agent loopback grid (medians of 30): `vrun --on REMOTE true`
 * without a workspace (`--no-sync`, as vrun worked when those targets were set) and with an
 * empty synced workspace beside it (sync's own targets are in bench/sync.ts), `vrun` on the
 * local agent, plain `true` and `node -e 0` as floors, `vgrid --help`, and the idle agent's RSS.
 * Issue 19's anchor beside them: a fresh `ssh 127.0.0.1 true` to the bench's own sshd
 * (ssh-anchor.ts), and the launch over `node -e 0` (target: at most 60 ms here).
 */
import fs from 'node:fs'
import { startGrid, stopAll, BIN } from '../test/helpers/procs.js'
import { median, percentile, timeCommand, timeRepeated, rssBytes } from './stats.js'
import { anchorMissing, sshTrueMs, startSshAnchor } from './ssh-anchor.js'

const RUNS = 30

export interface Figure { name: string, value: number, unit: string, target?: string, ok?: boolean }

export async function benchGridVrun (): Promise<Figure[]> {
  const [a, b] = await startGrid(2)
  try {
    const env = { ...process.env, VGRID_HOME: a.home }
    // One warm-up each: the first run pays for cold caches.
    await timeCommand(process.execPath, [BIN.vrun, '--on', b.peer, 'true'], env, a.workspace)
    // Interleaved with its floor, `node -e 0`: this machine's speed drifts from minute to
    // minute, and the launch target is the difference of the two.
    const remote: number[] = []
    const nodeFloor: number[] = []
    for (let i = 0; i < RUNS; i++) {
      remote.push(await timeCommand(process.execPath, [BIN.vrun, '--no-sync', '--on', b.peer, 'true'], env, a.workspace))
      nodeFloor.push(await timeCommand(process.execPath, ['-e', '0']))
    }
    const remoteSynced = await timeRepeated(RUNS, async () => await timeCommand(process.execPath, [BIN.vrun, '--on', b.peer, 'true'], env, a.workspace))
    const local = await timeRepeated(RUNS, async () => await timeCommand(process.execPath, [BIN.vrun, '--on', a.peer, 'true'], env, a.workspace))
    const plain = await timeRepeated(RUNS, async () => await timeCommand('true', []))
    const help = await timeRepeated(RUNS, async () => await timeCommand(process.execPath, [BIN.vgrid, '--help']))
    const missing = anchorMissing()
    if (missing !== undefined) process.stderr.write(`grid-vrun bench: no ssh anchor: ${missing}\n`)
    const anchor = missing === undefined ? await startSshAnchor() : undefined
    const ssh = anchor === undefined ? undefined : await (async () => { try { return Array.from({ length: RUNS }, () => sshTrueMs(anchor)) } finally { await anchor.stop() } })()
    // Idle: after the start-up work has settled, with gossip running.
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    const rss = Math.max(rssBytes(a.proc.pid!, (p) => fs.readFileSync(p, 'utf8')), rssBytes(b.proc.pid!, (p) => fs.readFileSync(p, 'utf8')))
    const ms = (x: number): number => Math.round(x * 10) / 10
    return [
      { name: 'vrun --no-sync --on REMOTE true, median of 30', value: ms(median(remote)), unit: 'ms', target: '<= 150', ok: median(remote) <= 150 },
      { name: 'vrun --no-sync --on REMOTE true, p90', value: ms(percentile(remote, 90)), unit: 'ms' },
      { name: 'vrun --on REMOTE true, empty workspace synced', value: ms(median(remoteSynced)), unit: 'ms' },
      { name: 'vrun --on LOCAL true, median of 30', value: ms(median(local)), unit: 'ms', target: '<= 150', ok: median(local) <= 150 },
      { name: 'plain `true`, median (floor)', value: ms(median(plain)), unit: 'ms' },
      { name: '`node -e 0`, median (floor of any Node CLI)', value: ms(median(nodeFloor)), unit: 'ms' },
      { name: 'vrun --no-sync --on REMOTE true over `node -e 0`', value: ms(median(remote) - median(nodeFloor)), unit: 'ms', target: '<= 60', ok: median(remote) - median(nodeFloor) <= 60 },
      ...(ssh === undefined
        ? []
        : [
            { name: 'fresh `ssh 127.0.0.1 true`, median of 30 (anchor)', value: ms(median(ssh)), unit: 'ms' },
            { name: 'vrun --no-sync --on REMOTE true / ssh true', value: Math.round(median(remote) / median(ssh) * 100) / 100, unit: 'x', target: '<= 1', ok: median(remote) <= median(ssh) }
          ]),
      { name: 'vgrid --help, median of 30', value: ms(median(help)), unit: 'ms', target: '<= 100', ok: median(help) <= 100 },
      { name: 'idle agent RSS (larger of two)', value: Math.round(rss / 2 ** 20), unit: 'MiB', target: '<= 120', ok: rss <= 120 * 2 ** 20 }
    ]
  } finally {
    await stopAll()
  }
}
