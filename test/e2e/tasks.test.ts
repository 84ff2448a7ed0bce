/**
 * The task system through the real binaries on a three-agent loopback grid: `vbatch` submits
 * in the background, scripts running inside tasks submit sub-tasks by calling `vbatch` by
 * name, dependencies by name gate what starts, outputs come back into the submitter's
 * workspace, and `vgrid task list|show|log|cancel|wait` see it all from any member.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { startGrid, stopAll, runCli, startCli, waitFor, sharedDir, guestShare, type AgentProc } from '../helpers/procs.js'
import { workspace, read, vbatch, submit, submitOne, show, listAll, wait, ended, childrenOf } from '../helpers/tasks.js'
import type { TaskRecord } from '../../src/agent/tasks/types.js'
import { NAME_TIE_MS } from '../../src/agent/tasks/names.js'

let a: AgentProc
let b: AgentProc
let c: AgentProc

/** Where the tests leave `go` files for their commands: shared with the agents' guests. */
let share: string
beforeAll(async () => {
  share = sharedDir()
  ;[a, b, c] = await startGrid(3, { args: guestShare(share) })
}, 60_000)

/** A `go` file a command waits for, in a directory the guests see. */
function goFile (name: string): string {
  return path.join(share, `${name}-${Math.random().toString(16).slice(2)}`)
}
afterAll(async () => { await stopAll() })

describe('sub-tasks submitted from inside a task', () => {
  it('runs a three-step pipeline script and brings its result back', async () => {
    const ws = workspace({
      'pipeline.sh': {
        exec: true,
        content: '#!/bin/sh\n' +
          'vbatch -P cpu-1 --name process sh process_data.sh\n' +
          'vbatch -P cpu-1 --name train --after-success process sh train_model.sh\n' +
          'vbatch -P cpu-1 --name eval --after-success train sh evaluate_model.sh\n'
      },
      'raw.txt': 'raw\n',
      'process_data.sh': 'set -e\n{ cat raw.txt; echo processed; } > data.txt\n',
      'train_model.sh': 'set -e\n{ cat data.txt; echo trained; } > model.txt\n',
      'evaluate_model.sh': 'set -e\n{ cat model.txt; echo evaluated; } > result.txt\n'
    })
    const parent = await submitOne(a, ['./pipeline.sh'], ws)
    const w = await wait(a, parent)
    expect(w.stderr).toBe('')
    expect(w.code).toBe(0)
    expect(read(ws, 'result.txt')).toBe('raw\nprocessed\ntrained\nevaluated\n')
    expect(read(ws, 'model.txt')).toBe('raw\nprocessed\ntrained\n')
    expect(read(ws, 'data.txt')).toBe('raw\nprocessed\n')

    // The recent tasks (no --all), from another member: the parent, its three children under it.
    const listed = await c.vgrid(['task', 'list', '--json'])
    expect(listed.code).toBe(0)
    const tasks = (JSON.parse(listed.stdout) as { tasks: TaskRecord[] }).tasks
    const p = tasks.find((t) => t.id === parent)!
    expect(p.state).toBe('succeeded')
    expect(p.exitCode).toBe(0)
    const kids = tasks.filter((t) => t.parent === parent)
    expect(kids.map((k) => k.name).sort()).toEqual(['eval', 'process', 'train'])
    expect([...p.children].sort()).toEqual(kids.map((k) => k.id).sort())
    for (const k of kids) expect(k.state, `${k.name}: ${k.error ?? ''}`).toBe('succeeded')
    const byName = new Map(kids.map((k) => [k.name, k]))
    // Each step waited for the one before it.
    expect(byName.get('train')!.deps.map((d) => [d.kind, d.name, d.id])).toEqual([['success', 'process', byName.get('process')!.id]])
    expect(byName.get('eval')!.deps.map((d) => [d.kind, d.name, d.id])).toEqual([['success', 'train', byName.get('train')!.id]])
    expect(byName.get('train')!.started!).toBeGreaterThanOrEqual(byName.get('process')!.ended!)
    expect(byName.get('eval')!.started!).toBeGreaterThanOrEqual(byName.get('train')!.ended!)
    // The parent ended only after all of them.
    for (const k of kids) expect(p.ended!).toBeGreaterThanOrEqual(k.ended!)

    // An id prefix is enough, from any member.
    const short = await b.vgrid(['task', 'show', parent.slice(0, 6), '--json'])
    expect(short.code).toBe(0)
    expect(JSON.parse(short.stdout).id).toBe(parent)
    const human = await c.vgrid(['task', 'show', parent.slice(0, 6)])
    expect(human.code).toBe(0)
    expect(human.stdout).toContain(parent)
    expect(human.stdout).toContain('succeeded')
  }, 90_000)

  it('runs a parent on one member and its children on another, outputs travelling back through the parent', async () => {
    const ws = workspace({ 'input.txt': 'input\n' })
    const script = 'vbatch --on "$C" --name gen sh -c \'{ cat input.txt; echo gen; } > gen.txt\' && ' +
      'vbatch --on "$C" --after-success gen sh -c \'{ cat gen.txt; echo used; } > use.txt; echo "$VGRID_PEER" > where.txt\''
    const parent = await submitOne(a, ['--on', b.peer, '-e', `C=${c.peer}`, 'sh', '-c', script], ws)
    const w = await wait(a, parent)
    expect(w.stderr).toBe('')
    expect(w.code).toBe(0)
    expect(read(ws, 'gen.txt')).toBe('input\ngen\n')
    expect(read(ws, 'use.txt')).toBe('input\ngen\nused\n')
    expect(read(ws, 'where.txt').trim()).toBe(c.peer)
    const p = await show(c, parent)
    expect(p.owner).toBe(a.peer)
    expect(p.peer).toBe(b.peer)
    const kids = await childrenOf(a, parent)
    expect(kids).toHaveLength(2)
    for (const k of kids) {
      expect(k.state).toBe('succeeded')
      // Sub-tasks belong to the agent that runs their parent.
      expect(k.owner).toBe(b.peer)
      expect(k.peer).toBe(c.peer)
    }
  }, 60_000)

  it('fans out over files with xargs: one child per file, the parent waits for all', async () => {
    const ws = workspace({
      'a.csv': 'x,1\n',
      'b.csv': 'y,2\ny,3\n',
      'c.csv': 'z,4\nz,5\nz,6\n',
      'process_file.sh': 'set -e\nsleep 0.5\nwc -l < "$1" | tr -d " " > "$1.count"\n'
    })
    const parent = await submitOne(a, ['bash', '-c', 'ls *.csv | xargs -I {} vbatch --name {} sh process_file.sh {}'], ws)
    const w = await wait(a, parent)
    expect(w.code).toBe(0)
    const p = await show(a, parent)
    expect(p.state).toBe('succeeded')
    const kids = await childrenOf(a, parent)
    expect(kids.map((k) => k.name).sort()).toEqual(['a.csv', 'b.csv', 'c.csv'])
    for (const k of kids) {
      expect(k.state).toBe('succeeded')
      expect(p.ended!).toBeGreaterThanOrEqual(k.ended!)
    }
    expect(p.children).toHaveLength(3)
    expect(read(ws, 'a.csv.count')).toBe('1\n')
    expect(read(ws, 'b.csv.count')).toBe('2\n')
    expect(read(ws, 'c.csv.count')).toBe('3\n')
  }, 60_000)

  it('fails the parent when a child fails, even though its own command exited 0', async () => {
    const ws = workspace()
    const parent = await submitOne(a, ['sh', '-c', "vbatch sh -c 'exit 3' && exit 0"], ws)
    const w = await wait(a, parent)
    expect(w.code).toBe(1)
    const p = await show(a, parent)
    expect(p.state).toBe('failed')
    expect(p.error).toMatch(/1 sub-task did not succeed/)
    const kids = await childrenOf(a, parent)
    expect(kids).toHaveLength(1)
    expect(kids[0].state).toBe('failed')
    expect(kids[0].exitCode).toBe(3)
  }, 60_000)

  it('cancels a parent and its running child', async () => {
    const ws = workspace()
    const parent = await submitOne(a, ['sh', '-c', 'vbatch --name slow sleep 60 && sleep 60'], ws)
    const child = await waitFor(async () => {
      const kids = await childrenOf(a, parent)
      return kids.length === 1 && kids[0].state === 'running' ? kids[0] : undefined
    }, 'the child to run', 20_000, 100)
    expect(child.name).toBe('slow')
    expect((await show(a, parent)).state).toBe('running')
    const t0 = Date.now()
    const r = await a.vgrid(['task', 'cancel', parent])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^(cancelled|cancelling) ${parent}`))
    const [p, k] = await Promise.all([ended(a, parent, 20_000), ended(a, child.id, 20_000)])
    expect(p.state).toBe('cancelled')
    expect(k.state).toBe('cancelled')
    console.log(`parent and child cancelled in ${Date.now() - t0} ms`)
    // Waiting on a cancelled task exits 130 (README, "Exit statuses"), whatever its command did with the stop.
    const w = await wait(a, parent)
    expect(w.code).toBe(130)
    expect(w.stderr).toMatch(/cancelled/)
  }, 60_000)

  it('cancels a parent whose command has ended while its child still runs', async () => {
    const ws = workspace()
    const parent = await submitOne(a, ['sh', '-c', 'vbatch --name kid sleep 60'], ws)
    await waitFor(async () => (await show(a, parent)).state === 'waiting-children', 'the parent to wait for its child', 20_000, 100)
    const record = await show(a, parent)
    const [child] = record.children
    expect(child).toMatch(/^[0-9a-f]{16}$/)
    // From the member running it (its owner may stop it), by a prefix of the id.
    const runner = [a, b, c].find((x) => x.peer === record.peer)!
    expect((await runner.vgrid(['task', 'cancel', parent.slice(0, 8)])).code).toBe(0)
    const [p, k] = await Promise.all([ended(a, parent, 20_000), ended(a, child, 20_000)])
    expect(k.state).toBe('cancelled')
    expect(p.state).toBe('cancelled')
    // Its child was cancelled with it, not failed: nothing to report beyond the cancel.
    expect(p.error).toBeUndefined()
    // its command had exited 0, but the task was cancelled: 130, as for any cancelled task
    const w = await wait(a, parent)
    expect(w.code).toBe(130)
    expect(w.stderr).toContain('cancelled (its command exited 0)')
  }, 60_000)
})

describe('dependencies between top-level tasks of one workspace', () => {
  it('gates each task on how its upstream ended', async () => {
    const ws = workspace()
    // 'ok' runs until the test lets it end: however slow the machine, its dependents see it run.
    const go = goFile('gates')
    const ok = await submitOne(a, ['--name', 'ok', 'sh', '-c', `while [ ! -e ${go} ]; do sleep 0.05; done; echo ok`], ws)
    const succOk = await submitOne(a, ['--after-success', 'ok', 'true'], ws)
    // Submitted while its upstream runs: it waits.
    expect((await show(a, succOk)).state).toBe('pending')
    const bad = await submitOne(a, ['--name', 'bad', 'sh', '-c', 'sleep 1; exit 1'], ws)
    const succBad = await submitOne(a, ['--after-success', 'bad', 'true'], ws)
    const failBad = await submitOne(a, ['--after-fail', 'bad', 'true'], ws)
    const failOk = await submitOne(a, ['--after-fail', 'ok', 'true'], ws)
    const anyOk = await submitOne(a, ['--after', 'ok', 'true'], ws)
    const anyBad = await submitOne(a, ['--after', 'bad', 'true'], ws)
    // A cascade: ca fails, so cb can never start, so cc can never start.
    const ca = await submitOne(a, ['--name', 'ca', 'sh', '-c', 'exit 2'], ws)
    const cb = await submitOne(a, ['--name', 'cb', '--after-success', 'ca', 'true'], ws)
    const cc = await submitOne(a, ['--name', 'cc', '--after-success', 'cb', 'true'], ws)
    fs.writeFileSync(go, '')

    const expected: Array<[string, string, string, number]> = [
      ['ok', ok, 'succeeded', 0],
      ['bad', bad, 'failed', 1],
      ['after-success ok', succOk, 'succeeded', 0],
      ['after-success bad', succBad, 'upstream-failed', 254],
      ['after-fail bad', failBad, 'succeeded', 0],
      ['after-fail ok', failOk, 'upstream-failed', 254],
      ['after ok', anyOk, 'succeeded', 0],
      ['after bad', anyBad, 'succeeded', 0],
      ['ca', ca, 'failed', 2],
      ['cb', cb, 'upstream-failed', 254],
      ['cc', cc, 'upstream-failed', 254]
    ]
    const codes = await Promise.all(expected.map(async ([, id]) => (await wait(b, id)).code))
    const records = await Promise.all(expected.map(async ([, id]) => await show(a, id)))
    expect(expected.map(([what], i) => [what, records[i].state, codes[i]])).toEqual(expected.map(([what, , state, code]) => [what, state, code]))

    const rec = new Map(expected.map(([what], i) => [what, records[i]]))
    // What ran waited for its upstream to end; what could not never started.
    for (const [what, up] of [['after-success ok', 'ok'], ['after-fail bad', 'bad'], ['after ok', 'ok'], ['after bad', 'bad']] as const) {
      expect(rec.get(what)!.started!, what).toBeGreaterThanOrEqual(rec.get(up)!.ended!)
    }
    for (const what of ['after-success bad', 'after-fail ok', 'cb', 'cc']) {
      expect(rec.get(what)!.started, what).toBeUndefined()
      expect(rec.get(what)!.attempts, what).toEqual([])
    }
    expect(rec.get('cb')!.error).toMatch(/\bca\b/)
    expect(rec.get('cc')!.error).toMatch(/\bcb\b/)
  }, 60_000)

  it('treats a fan-out as one upstream: it failed when any shard did', async () => {
    const ws = workspace()
    await submit(a, ['--name', 'fan', '-N', '3', '--cpus', '0', 'sh', '-c', 'sleep 1; [ "$VGRID_SHARD_INDEX" != 1 ]'], ws)
    const alert = await submitOne(a, ['--after-fail', 'fan', 'true'], ws)
    const next = await submitOne(a, ['--after-success', 'fan', 'true'], ws)
    await submit(a, ['--name', 'fine', '-N', '2', '--cpus', '0', 'true'], ws)
    const quiet = await submitOne(a, ['--after-fail', 'fine', 'true'], ws)
    expect((await wait(b, alert)).code).toBe(0)
    expect((await wait(b, next)).code).toBe(254)
    expect((await wait(b, quiet)).code).toBe(254)
    expect((await show(a, next)).state).toBe('upstream-failed')
    expect((await show(a, quiet)).state).toBe('upstream-failed')
  }, 60_000)
})

describe('task logs', () => {
  it('prints stdout and stderr from a member other than the owner', async () => {
    const ws = workspace()
    const id = await submitOne(a, ['--no-sync', 'sh', '-c', 'echo out1; echo err1 >&2; echo out2'], ws)
    expect((await wait(a, id)).code).toBe(0)
    const log = await b.vgrid(['task', 'log', id])
    expect(log.code).toBe(0)
    expect(log.stdout).toBe('out1\nout2\n')
    expect(log.stderr).toBe('err1\n')
    const errOnly = await c.vgrid(['task', 'log', id.slice(0, 8), '--stderr-only'])
    expect(errOnly.code).toBe(0)
    expect(errOnly.stdout).toBe('')
    expect(errOnly.stderr).toBe('err1\n')
  }, 30_000)

  it('follows a running task\'s log from another member and exits with its status', async () => {
    const ws = workspace()
    const id = await submitOne(a, ['--no-sync', 'sh', '-c', 'echo first; sleep 1; echo second >&2; exit 5'], ws)
    const log = await runCli('vgrid', ['task', 'log', '-f', id], { home: c.home, timeoutMs: 30_000 })
    expect(log.stdout).toBe('first\n')
    expect(log.stderr).toBe('second\n')
    expect(log.code).toBe(5)
  }, 30_000)

  it('takes the --name of a task where an id goes, scoped as --after is: this workspace, newest first', async () => {
    const ws = workspace()
    const other = workspace()
    await submitOne(a, ['--name', 'prep', 'sh', '-c', 'echo elsewhere'], other)
    await submitOne(a, ['--name', 'prep', 'sh', '-c', 'echo old'], ws)
    const prep = await submitOne(a, ['--name', 'prep', 'sh', '-c', 'echo new; exit 3'], ws)
    const shards = await submit(a, ['--name', 'train', '-N', '3', 'sh', '-c', 'echo shard $VGRID_SHARD_INDEX'], ws)
    const inWs = { cwd: ws }
    const waited = await a.vgrid(['task', 'wait', 'prep'], inWs)
    expect(waited.code).toBe(3)
    expect((await a.vgrid(['task', 'log', 'prep'], inWs)).stdout).toBe('new\n')
    expect(JSON.parse((await a.vgrid(['task', 'show', 'prep', '--json'], inWs)).stdout).id).toBe(prep)
    // from another workspace: that one's own task of the name
    expect((await a.vgrid(['task', 'log', 'prep'], { cwd: other })).stdout).toBe('elsewhere\n')
    // a shard by its index, as `vgrid task list` shows it or short
    expect((await a.vgrid(['task', 'wait', 'train[2]'], inWs)).code).toBe(0)
    expect((await a.vgrid(['task', 'log', 'train[2/3]'], inWs)).stdout).toBe('shard 2\n')
    expect(JSON.parse((await a.vgrid(['task', 'show', 'train[0]', '--json'], inWs)).stdout).id).toBe(shards[0])
    const all = await a.vgrid(['task', 'show', 'train'], inWs)
    expect(all.code).toBe(2)
    expect(all.stderr).toContain('train names 3 shards')
    expect(all.stderr).toContain('train[0] to train[2]')
    // wait and cancel take a fan-out whole
    expect((await a.vgrid(['task', 'wait', 'train'], inWs)).code).toBe(0)
    await submit(a, ['--name', 'mixed', '-N', '3', 'sh', '-c', 'exit $((VGRID_SHARD_INDEX * 2))'], ws)
    const mixed = await a.vgrid(['task', 'wait', 'mixed'], inWs)
    expect(mixed.code).toBe(2)
    expect(mixed.stderr).toContain('mixed: 2 of 3 shards did not succeed: [1] failed (exit 2), [2] failed (exit 4)')
    const slow = await submit(a, ['--name', 'slow', '-N', '3', '--cpus', '0', 'sleep', '30'], ws)
    const cancelled = await a.vgrid(['task', 'cancel', 'slow'], inWs)
    expect(cancelled.stdout).toBe('cancelling slow: 3 shards\n')
    for (const id of slow) expect((await ended(a, id)).state).toBe('cancelled')
    const none = await a.vgrid(['task', 'log', 'nosuch'], inWs)
    expect(none.code).toBe(255)
    expect(none.stderr).toContain('no task named nosuch')
    // from another member in the same workspace: the same task
    expect((await b.vgrid(['task', 'log', 'prep'], inWs)).stdout).toBe('new\n')
    expect((await b.vgrid(['task', 'log', prep], inWs)).stdout).toBe('new\n')
  }, 60_000)

  it('finds a name from any member, nearest scope first, and lists the candidates when two members\' are equally near', async () => {
    const ws = workspace({
      'main_pipeline.sh': { exec: true, content: '#!/bin/sh\nvbatch --name train sh -c "echo child train"\nvbatch --no-sync --name probe sh -c "echo child probe"\n' }
    })
    const elsewhere = workspace()
    // an older top-level `train` and `probe`, then a pipeline whose children have those names, all from ws
    let newest = 0
    for (const name of ['train', 'probe']) {
      const id = await submitOne(a, ['--no-sync', '--name', name, 'sh', '-c', `echo top-level ${name}`], ws)
      expect((await wait(a, id)).code).toBe(0)
      newest = Math.max(newest, (await show(a, id)).created)
    }
    // Names created closer than NAME_TIE_MS are a tie from a member that submitted neither:
    // the pipeline's children must come later than that to be the newest.
    await waitFor(() => Date.now() > newest + NAME_TIE_MS, 'the top-level tasks to be older than a tie', 10_000, 50)
    const pipeline = await submitOne(a, ['--on', b.peer, './main_pipeline.sh'], ws)
    expect((await wait(a, pipeline)).code).toBe(0)
    const child = (await childrenOf(a, pipeline)).find((t) => t.name === 'train')!
    expect(child.owner).toBe(b.peer)
    // the caller's workspace holds both: the newer, the pipeline's child (owned by b), wins from
    // any member; a --no-sync child is of the workspace its pipeline was started from
    for (const m of [a, b, c]) {
      const log = await m.vgrid(['task', 'log', 'train'], { cwd: ws })
      expect(log.stdout, `from ${m.peer}: ${log.stderr}`).toBe('child train\n')
    }
    expect((await a.vgrid(['task', 'log', 'probe'], { cwd: ws })).stdout).toBe('child probe\n')
    // outside it, a's own submissions come first on a; on c, which submitted none, the grid's newest
    expect((await a.vgrid(['task', 'log', 'train'], { cwd: elsewhere })).stdout).toBe('top-level train\n')
    expect((await c.vgrid(['task', 'log', 'train'], { cwd: elsewhere })).stdout).toBe('child train\n')
    expect((await c.vgrid(['task', 'wait', 'train'], { cwd: elsewhere })).code).toBe(0)
    expect(JSON.parse((await c.vgrid(['task', 'show', 'train', '--json'], { cwd: elsewhere })).stdout).id).toBe(child.id)

    // the same name running on two members, neither in the caller's scope: an id is asked for
    const twins = [await submitOne(b, ['--no-sync', '--name', 'twin', 'sleep', '300'], workspace()), await submitOne(c, ['--no-sync', '--name', 'twin', 'sleep', '300'], workspace())]
    try {
      for (const action of ['log', 'show', 'wait', 'cancel']) {
        const r = await a.vgrid(['task', action, 'twin'], { cwd: elsewhere })
        expect(r.code, `task ${action}: ${r.stderr}`).toBe(2)
        expect(r.stderr).toContain('2 tasks named twin are equally near')
        for (const id of twins) expect(r.stderr).toContain(id.slice(0, 12))
        expect(r.stderr).toContain('hint: give the id of the one you mean')
      }
      for (const id of twins) expect((await show(a, id)).state).not.toBe('cancelled')
    } finally {
      // each through the member it was submitted from, which may cancel it
      await b.vgrid(['task', 'cancel', twins[0]!])
      await c.vgrid(['task', 'cancel', twins[1]!])
    }
    for (const id of twins) expect((await ended(a, id)).state).toBe('cancelled')

    // a fan-out waited for whole, here and from another member: one listener per shard on
    // the waiting client's signal, not a leak for Node to warn about
    await submit(a, ['--no-sync', '--name', 'burst', '-N', '24', '--cpus', '0', 'true'], elsewhere)
    expect((await a.vgrid(['task', 'wait', 'burst'], { cwd: elsewhere })).code).toBe(0)
    expect((await b.vgrid(['task', 'wait', 'burst'], { cwd: elsewhere })).code).toBe(0)
    for (const m of [a, b]) expect(m.output()).not.toContain('MaxListenersExceededWarning')
  }, 90_000)

  it('vbatch -f prints the output and exits with the task\'s status', async () => {
    const ws = workspace()
    const r = await vbatch(a, ['-f', 'sh', '-c', 'echo hi; exit 4'], ws)
    expect(r.stdout).toBe('hi\n')
    expect(r.code).toBe(4)
  }, 30_000)

  it('vrun, vbatch -f and task wait end with the statuses of the README\'s table', async () => {
    const ws = workspace()
    // cancelled while vbatch -f follows it (from the member it was submitted from): 130
    const followed = startCli('vbatch', ['-f', '--name', 'victim', '--no-sync', 'sh', '-c', 'echo started; sleep 60'], { home: a.home, cwd: ws, timeoutMs: 30_000 })
    await waitFor(() => followed.stdout().includes('started'), 'the followed task to start', 20_000)
    expect((await a.vgrid(['task', 'cancel', 'victim'], { cwd: ws })).code).toBe(0)
    const r = await followed.done
    expect(r.code, r.stderr).toBe(130)
    expect((await a.vgrid(['task', 'wait', 'victim'], { cwd: ws })).code).toBe(130)
    // a dependency failed: never ran, 254, from vrun as from vbatch -f
    expect((await submit(a, ['--no-sync', '--name', 'broken', 'false'], ws)).length).toBe(1)
    const after = await a.vrun(['--no-sync', '--after-success', 'broken', 'echo', 'never'], { cwd: ws })
    expect(after.stdout).toBe('')
    expect(after.code, after.stderr).toBe(254)
    const batchAfter = await vbatch(a, ['-f', '--no-sync', '--after-success', 'broken', 'echo', 'never'], ws)
    expect(batchAfter.code, batchAfter.stderr).toBe(254)
    // a command line to fix: 2
    expect((await a.vrun(['--cpus'], { cwd: ws })).code).toBe(2)
  }, 60_000)
})

describe('refused submissions create nothing', () => {
  it('refuses an unknown dependency, -N 0 and more GPUs than any member has', async () => {
    const ws = workspace()
    const before = (await listAll(a)).map((t) => t.id).sort()

    const unknown = await vbatch(a, ['--after-success', 'no-such-step', 'true'], ws)
    expect(unknown.code).not.toBe(0)
    expect(unknown.stdout).toBe('')
    expect(unknown.stderr).toContain('no-such-step')

    const zero = await vbatch(a, ['-N', '0', 'true'], ws)
    expect(zero.code).toBe(2)
    expect(zero.stdout).toBe('')
    expect(zero.stderr).toMatch(/-N 0/)

    const gpus = await vbatch(a, ['--gpus', '4', 'true'], ws)
    expect(gpus.code).not.toBe(0)
    expect(gpus.stdout).toBe('')
    expect(gpus.stderr).toMatch(/could ever run/)
    expect(gpus.stderr).toMatch(/4 GPUs?/)

    // A dependency whose name is only valid in another workspace is refused too.
    const named = workspace()
    const other = await submitOne(a, ['--name', 'elsewhere', 'true'], named)
    expect((await wait(a, other)).code).toBe(0)
    const cross = await vbatch(a, ['--after', 'elsewhere', 'true'], ws)
    expect(cross.code).not.toBe(0)
    expect(cross.stderr).toContain('elsewhere')

    const after = (await listAll(a)).map((t) => t.id).sort()
    expect(after).toEqual([...before, other].sort())
  }, 30_000)
})

describe('shards', () => {
  it('-N 3 runs three shards, each told its index and the count', async () => {
    const ws = workspace()
    const ids = await submit(a, ['-N', '3', 'sh', '-c', 'echo "$VGRID_SHARD_INDEX of $VGRID_SHARD_COUNT" > shard-$VGRID_SHARD_INDEX.txt'], ws)
    expect(ids).toHaveLength(3)
    expect(new Set(ids).size).toBe(3)
    const codes = await Promise.all(ids.map(async (id) => (await wait(a, id)).code))
    expect(codes).toEqual([0, 0, 0])
    for (let i = 0; i < 3; i++) expect(read(ws, `shard-${i}.txt`)).toBe(`${i} of 3\n`)
    const records = await Promise.all(ids.map(async (id) => await show(a, id)))
    expect(records.map((t) => t.shard)).toEqual([0, 1, 2].map((index) => ({ index, count: 3 })))
  }, 60_000)

  it('--after NAME of a sharded task waits for every shard', async () => {
    const ws = workspace()
    const shards = await submit(a, ['-N', '3', '--name', 'sweep', '--no-sync', 'sh', '-c', 'sleep $VGRID_SHARD_INDEX'], ws)
    const next = await submitOne(a, ['--after-success', 'sweep', '--no-sync', 'true'], ws)
    expect((await wait(a, next)).code).toBe(0)
    const after = await show(a, next)
    expect(after.deps.map((d) => d.id).sort()).toEqual([...shards].sort())
    const ends = await Promise.all(shards.map(async (id) => (await show(a, id)).ended!))
    expect(after.started!).toBeGreaterThanOrEqual(Math.max(...ends))
  }, 60_000)
})

describe('gangs', () => {
  /** Each shard writes what it was told: its index, the gang's hosts, the master's address and port. */
  const TELL = ['sh', '-c', 'echo "$VGRID_SHARD_INDEX $VGRID_GANG_HOSTS $MASTER_ADDR $MASTER_PORT" > gang-$VGRID_SHARD_INDEX.txt']

  async function checkGang (ws: string, ids: string[]): Promise<void> {
    const recs = await Promise.all(ids.map(async (id) => await ended(a, id, 40_000)))
    for (const r of recs) expect(r.state, r.error).toBe('succeeded')
    // Each shard takes a whole member (2 cores): three shards, three members.
    expect(new Set(recs.map((r) => r.peer)).size).toBe(3)
    const told = [0, 1, 2].map((i) => read(ws, `gang-${i}.txt`).trim().split(' '))
    expect(told.map((t) => t[0])).toEqual(['0', '1', '2'])
    const hosts = told[0]![1]!.split(',')
    expect(hosts).toHaveLength(3)
    for (const t of told) {
      expect(t[1]).toBe(told[0]![1])
      expect(t[2]).toBe(hosts[0])
      expect(t[3]).toBe(told[0]![3])
      expect(Number(t[3])).toBeGreaterThan(1024)
    }
    // Placed together: every shard held its member (the gang's gate) before any command ran,
    // so each was placed before any ended. (Not when each started: on a loaded machine one
    // shard's start is told seconds after another has ended.)
    expect(Math.max(...recs.map((r) => r.attempts[0]!.started))).toBeLessThanOrEqual(Math.min(...recs.map((r) => r.ended!)))
  }

  it('refuses at once a gang the grid could never hold', async () => {
    // shards of a whole member each: one more than there are members of the largest size
    const peers = (JSON.parse((await a.vgrid(['peers', '--json'])).stdout) as { peers: Array<{ offer: { cpus: number } }> }).peers
    const cpus = Math.max(...peers.map((p) => p.offer.cpus))
    const fit = peers.filter((p) => p.offer.cpus >= cpus).length
    const r = await runCli('vbatch', ['-N', String(fit + 1), '--gang', '--cpus', String(cpus), 'true'], { home: a.home, cwd: workspace() })
    expect(r.code).toBe(255)
    expect(r.stderr).toContain(`can never start: the members of the grid could hold at most ${fit} at once`)
    expect((await listAll(a)).filter((t) => t.argv.join(' ') === 'true' && t.shard?.count === fit + 1)).toHaveLength(0)
  })

  it('--gang places all shards at once, each told the gang\'s hosts and its master', async () => {
    const ws = workspace()
    const ids = await submit(a, ['-N', '3', '--gang', '--cpus', '2', ...TELL], ws)
    expect(ids).toHaveLength(3)
    await checkGang(ws, ids)
  }, 60_000)

  it('--gang starts none of its shards while one member is busy, then all of them', async () => {
    const ws = workspace()
    const go = goFile('gang')
    const busy = startCli('vrun', ['--no-sync', '--on', c.peer, '--cpus', '2', 'sh', '-c', `echo busy; while [ ! -e ${go} ]; do sleep 0.05; done`], { home: b.home, cwd: ws, timeoutMs: 40_000 })
    await waitFor(() => busy.stdout().includes('busy'), 'c to be busy', 20_000, 50)
    const ids = await submit(a, ['-N', '3', '--gang', '--cpus', '2', ...TELL], ws)
    // For two seconds (what a gang would need to start, many times over), no shard leaves the queue.
    const until = Date.now() + 2_000
    while (Date.now() < until) {
      for (const id of ids) expect((await show(a, id)).state).toBe('queued')
    }
    expect(fs.readdirSync(ws).filter((n) => n.startsWith('gang-'))).toEqual([])
    fs.writeFileSync(go, '')
    expect((await busy.done).code).toBe(0)
    await checkGang(ws, ids)
  }, 60_000)
})
