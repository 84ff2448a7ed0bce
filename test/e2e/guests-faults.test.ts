/**
 * Nothing of a task outlives its executor, and no task runs twice at once when its executor
 * is killed or frozen, through the real binaries. A heavy suite (`npm run test:heavy`): each
 * test kills or freezes agents.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, it, expect, afterAll } from 'vitest'
import { startGrid, startAgent, stopAll, runCli, waitFor, sharedDir, guestShare } from '../helpers/procs.js'
import { workspace, processesWith } from '../helpers/guests.js'

afterAll(async () => { await stopAll() })

describe('nothing of a task outlives its executor', () => {
  it('ends with its agent, kill -9 included', async () => {
    const [x, y] = await startGrid(2)
    const marker = `61${Math.floor(Math.random() * 9000 + 1000)}`
    const ws = workspace()
    const run = x.vrun(['--on', y.peer, 'sh', '-c', `setsid sleep ${marker}1 & sleep ${marker}2`], { cwd: ws, timeoutMs: 30_000 })
    await waitFor(() => processesWith(`sleep ${marker}`).length >= 2, 'the guest to start', 15_000, 50)
    y.proc.kill('SIGKILL')
    await waitFor(() => processesWith(`sleep ${marker}`).length === 0, 'the guest to die with its agent', 5_000, 50)
    expect((await run).code).not.toBe(0)
  }, 60_000)

  for (const how of ['SIGKILL', 'SIGSTOP'] as const) {
    it(`never runs two attempts of a task at once: the executor ${how === 'SIGKILL' ? 'killed' : 'frozen'}`, async () => {
      const share = sharedDir()
      // x only submits (it lends one core, the task needs two): the task runs on y or z, and
      // again on the other when that one is lost.
      const x = await startAgent({ args: ['--cpus', '1'] })
      const [y, z] = await Promise.all([0, 1].map(async () => await startAgent({ join: x.token, args: guestShare(share) })))
      await waitFor(async () => (await x.vgrid(['peers', '--json'])).stdout.split('"peer"').length === 4, 'three members', 20_000, 100)
      const log = path.join(share, 'log')
      fs.writeFileSync(log, '')
      fs.chmodSync(log, 0o666)
      const beat = `i=0; while [ $i -lt 60 ]; do echo "$VGRID_PEER $(date +%s%N)" >> ${log}; i=$((i+1)); sleep 0.25; done`
      const sub = await runCli('vbatch', ['--no-sync', '--retries', '1', '-P', 'cpu-2', '--name', 'beat', 'sh', '-c', beat], { home: x.home, cwd: x.workspace })
      expect(sub.stderr).toBe('')
      expect(sub.code).toBe(0)
      await waitFor(() => fs.readFileSync(log, 'utf8').split('\n').length > 4, 'the first attempt to beat', 20_000, 50)
      const first = fs.readFileSync(log, 'utf8').split('\n')[0]!.split(' ')[0]!
      const victim = [y, z].find((p) => p.peer === first)!
      expect(victim).toBeDefined()
      if (how === 'SIGKILL') victim.proc.kill('SIGKILL')
      else victim.proc.kill('SIGSTOP')
      try {
        const other = [y, z].find((p) => p !== victim)!
        await waitFor(() => fs.readFileSync(log, 'utf8').includes(other.peer), 'the second attempt to start elsewhere', 60_000, 100)
        await waitFor(() => fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith(other.peer)).length >= 8, 'the second attempt to run a while', 20_000, 100)
      } finally {
        if (how === 'SIGSTOP') victim.proc.kill('SIGCONT')
      }
      const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' '))
      const at = (peer: string): bigint[] => lines.filter(([p]) => p === peer).map(([, t]) => BigInt(t!))
      const firstBeats = at(victim.peer)
      const secondBeats = at(lines.find(([p]) => p !== victim.peer)![0]!)
      // Every beat of the lost attempt came before the first of the next one.
      const lastOfFirst = firstBeats.reduce((m, t) => (t > m ? t : m))
      const firstOfSecond = secondBeats.reduce((m, t) => (t < m ? t : m))
      expect(lastOfFirst < firstOfSecond, `the lost attempt beat until ${lastOfFirst}, the next began at ${firstOfSecond}`).toBe(true)
      // The frozen one, woken, beats no more.
      if (how === 'SIGSTOP') {
        const n = firstBeats.length
        await new Promise((resolve) => setTimeout(resolve, 1_500))
        expect(at(victim.peer).length).toBe(n)
      }
    }, 150_000)
  }
})
