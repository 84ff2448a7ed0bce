/**
 * The list of running commands' process groups: a restarted agent stops the groups a killed
 * one left, and only those (a pid the system gave to another process since is left alone).
 */
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import { COMPACT_AFTER_LINES, OrphanLedger, RUNNING_LOG } from '../../src/exec/orphans.js'
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

/** The groups the home's log lists as running now (adds not followed by a remove). */
function listed (home: string): number[] {
  const live = new Set<number>()
  for (const line of fs.readFileSync(path.join(home, RUNNING_LOG), 'utf8').split('\n')) {
    if (line === '') continue
    const o = JSON.parse(line) as { a?: number, r?: number }
    if (o.a !== undefined) live.add(o.a)
    else live.delete(o.r!)
  }
  return [...live]
}

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
    expect(listed(home)).toEqual([left])

    const again = OrphanLedger.open(home)
    expect(again.stopped).toBe(1)
    await waitFor(() => !running(left), 'the listed group to be stopped', 5_000, 20)
    expect(running(ended)).toBe(true)
    expect(listed(home)).toEqual([])
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

  it('leaves alone a process that now has a listed number but is not the one listed, and skips torn lines', () => {
    const home = tempDir()
    OrphanLedger.open(home)
    const other = leader()
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    // Same pid, another start time: the listed command ended and its number was reused.
    // Garbage is dropped, not acted on: a line a crash cut short, a group 1, junk.
    fs.writeFileSync(path.join(home, RUNNING_LOG), [JSON.stringify({ a: other, boot, start: '1' }), '{"a":1}', 'junk', '[1]', '{"a":' + String(other)].join('\n'))
    expect(OrphanLedger.open(home).stopped).toBe(0)
    expect(running(other)).toBe(true)
    expect(listed(home)).toEqual([])
  })

  it('stops the groups an earlier agent listed one file each in running/, and drops those files', async () => {
    const home = tempDir()
    const left = leader()
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    const start = fs.readFileSync(`/proc/${left}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]
    fs.mkdirSync(path.join(home, 'running'))
    fs.writeFileSync(path.join(home, 'running', String(left)), JSON.stringify({ boot, start, task: '0123456789abcdef' }))
    fs.writeFileSync(path.join(home, 'running', 'junk'), 'x')
    const { stopped, tasks } = OrphanLedger.open(home)
    expect({ stopped, tasks }).toEqual({ stopped: 1, tasks: ['0123456789abcdef'] })
    await waitFor(() => !running(left), 'the listed group to be stopped', 5_000, 20)
    expect(fs.existsSync(path.join(home, 'running'))).toBe(false)
  })

  it('keeps its log short: rewritten with only the running groups as it grows', async () => {
    const home = tempDir()
    const { ledger } = OrphanLedger.open(home)
    const left = leader()
    const ended = leader()
    ledger.add(left, '0123456789abcdef')
    for (let i = 0; i < COMPACT_AFTER_LINES; i++) {
      ledger.add(ended)
      ledger.remove(ended)
    }
    const lines = fs.readFileSync(path.join(home, RUNNING_LOG), 'utf8').split('\n').length
    expect(lines).toBeLessThan(COMPACT_AFTER_LINES + 10)
    expect(listed(home)).toEqual([left])
    const again = OrphanLedger.open(home)
    expect({ stopped: again.stopped, tasks: again.tasks }).toEqual({ stopped: 1, tasks: ['0123456789abcdef'] })
    await waitFor(() => !running(left), 'the listed group to be stopped', 5_000, 20)
    expect(running(ended)).toBe(true)
  })
})
