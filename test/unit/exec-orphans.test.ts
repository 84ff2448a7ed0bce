/**
 * The list of running commands' process groups: a restarted agent stops the groups a killed
 * one left, and only those (a pid the system gave to another process since is left alone).
 */
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import { OrphanLedger } from '../../src/exec/orphans.js'
import { processRuns, tempDir, waitFor } from '../helpers/procs.js'

const started: ChildProcess[] = []
afterEach(() => { for (const p of started.splice(0)) p.kill('SIGKILL') })

/** A command that leads its own process group, as the agent starts them. */
function leader (): number {
  const p = spawn('sleep', ['100'], { detached: true, stdio: 'ignore' })
  started.push(p)
  return p.pid!
}

const running = processRuns

describe('OrphanLedger', () => {
  it('stops the groups still listed at the next open, and clears the list', async () => {
    const home = tempDir()
    const { ledger, stopped } = OrphanLedger.open(home)
    expect(stopped).toBe(0)
    const left = leader()
    const ended = leader()
    ledger.add(left)
    ledger.add(ended)
    ledger.remove(ended)
    expect(fs.readdirSync(path.join(home, 'running'))).toEqual([String(left)])

    const again = OrphanLedger.open(home)
    expect(again.stopped).toBe(1)
    await waitFor(() => !running(left), 'the listed group to be stopped', 5_000, 20)
    expect(running(ended)).toBe(true)
    expect(fs.readdirSync(path.join(home, 'running'))).toEqual([])
  })

  it('names the tasks whose commands it stopped, and only well-formed ids', async () => {
    const home = tempDir()
    const { ledger } = OrphanLedger.open(home)
    const a = leader()
    const b = leader()
    const c = leader()
    ledger.add(a, '0123456789abcdef')
    ledger.add(b)
    ledger.add(c, '../../etc/passwd')
    const again = OrphanLedger.open(home)
    expect(again.stopped).toBe(3)
    expect(again.tasks).toEqual(['0123456789abcdef'])
    await waitFor(() => !running(a) && !running(b) && !running(c), 'the listed groups to be stopped', 5_000, 20)
  })

  it('leaves alone a process that now has a listed number but is not the one listed', () => {
    const home = tempDir()
    OrphanLedger.open(home)
    const other = leader()
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    // Same pid, another start time: the listed command ended and its number was reused.
    fs.writeFileSync(path.join(home, 'running', String(other)), JSON.stringify({ boot, start: '1' }))
    // Garbage is dropped, not acted on.
    fs.writeFileSync(path.join(home, 'running', '1'), '{}')
    fs.writeFileSync(path.join(home, 'running', 'junk'), 'x')
    expect(OrphanLedger.open(home).stopped).toBe(0)
    expect(running(other)).toBe(true)
    expect(fs.readdirSync(path.join(home, 'running'))).toEqual([])
  })
})
