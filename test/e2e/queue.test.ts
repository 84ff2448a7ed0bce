/**
 * A run that fits nowhere now waits for a member with room instead of failing, and starts as
 * soon as one frees up.
 */
import { describe, it, expect, afterAll } from 'vitest'
import { startAgent, stopAll, spawnCli, collect, waitFor } from '../helpers/procs.js'

afterAll(async () => { await stopAll() })

describe('a busy grid', () => {
  it('queues a run and starts it when the core frees up', async () => {
    const a = await startAgent({ args: ['--cpus', '1'] })
    const holder = spawnCli('vrun', ['sh', '-c', 'echo holding; read x; echo released'], { home: a.home })
    let held = ''
    holder.stdout?.on('data', (d: Buffer) => { held += d.toString() })
    const holderDone = collect(holder, 30_000, null)
    await waitFor(() => held.includes('holding'), 'the first run to hold the only core')

    const waiter = spawnCli('vrun', ['echo', 'second'], { home: a.home, env: { VGRID_VERBOSE: '1' } })
    let waited = ''
    waiter.stderr?.on('data', (d: Buffer) => { waited += d.toString() })
    const waiterDone = collect(waiter, 30_000)
    await waitFor(() => waited.includes('waiting'), 'the second run to be queued')
    expect(waited).toMatch(/busy/)

    holder.stdin?.end('go\n')
    expect((await holderDone).code).toBe(0)
    const r = await waiterDone
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('second\n')
  })

  it('gives up waiting when the user presses Ctrl-C', async () => {
    const a = await startAgent({ args: ['--cpus', '1'] })
    const holder = spawnCli('vrun', ['sh', '-c', 'echo holding; read x'], { home: a.home })
    let held = ''
    holder.stdout?.on('data', (d: Buffer) => { held += d.toString() })
    const holderDone = collect(holder, 30_000, null)
    await waitFor(() => held.includes('holding'), 'the first run to hold the only core')
    const waiter = spawnCli('vrun', ['echo', 'never'], { home: a.home, env: { VGRID_VERBOSE: '1' } })
    let waited = ''
    waiter.stderr?.on('data', (d: Buffer) => { waited += d.toString() })
    const waiterDone = collect(waiter, 30_000)
    await waitFor(() => waited.includes('waiting'), 'the second run to be queued')
    waiter.kill('SIGINT')
    const r = await waiterDone
    expect(r.code).toBe(130)
    expect(r.stdout).toBe('')
    holder.stdin?.end('go\n')
    await holderDone
    // The abandoned run never took the core: a new one gets it at once.
    expect((await a.vrun(['echo', 'third'])).stdout).toBe('third\n')
  })
})
