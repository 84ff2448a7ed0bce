import { describe, it, expect } from 'vitest'
// STARTED is in the local time of the machine: the tests' machine's is UTC
process.env.TZ = 'UTC'
import type { TaskRecord } from '../../src/agent/tasks/types.js'
import {
  describeIds, flattenTrees, formatArgv, formatElapsed, renderTaskList, renderTaskShow, selectTaskTrees, taskEndNotice, taskTrees, tasksJson
} from '../../src/cli/task-output.js'

const NOW = Date.UTC(2025, 0, 2, 12, 0, 0)
const MIN = 60_000
const HOUR = 60 * MIN

/** A record; `n` makes the id (n repeated to 16 hex digits). */
function task (n: string, over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id: n.repeat(16 / n.length),
    owner: '12D3KooWOwnerPeerIdAbCdEf',
    ownerHost: 'lab-01',
    argv: ['sleep', '1'],
    state: 'succeeded',
    created: NOW - 10 * MIN,
    deps: [],
    retries: 0,
    attempts: [],
    attached: false,
    children: [],
    ...over
  }
}

const id = (n: string): string => n.repeat(16 / n.length)

describe('durations in task tables', () => {
  it.each([
    [0, '0ms'],
    [850, '850ms'],
    [1000, '1.0s'],
    [12_345, '12.3s'],
    [59_999, '59.9s'],
    [60_000, '1m00s'],
    [245_000, '4m05s'],
    [3_599_999, '59m59s'],
    [3_720_000, '1h02m'],
    [130 * HOUR, '130h00m'],
    [-5, '0ms']
  ])('%d ms → %s', (ms, text) => {
    expect(formatElapsed(ms)).toBe(text)
  })
})

describe('task trees', () => {
  it('puts children under their parent and orphans at the top, each level in creation order', () => {
    const tasks = [
      task('b', { parent: id('a'), created: NOW - 5 * MIN }),
      task('a', { created: NOW - 9 * MIN }),
      task('c', { parent: id('a'), created: NOW - 6 * MIN }),
      task('d', { parent: id('c'), created: NOW - 4 * MIN }),
      task('e', { parent: id('f'), created: NOW - 8 * MIN }), // its parent is not in the list
      task('1', { created: NOW - 1 * MIN })
    ]
    const order = (trees: ReturnType<typeof taskTrees>): unknown => trees.map((t) => [t.task.id[0], order(t.children)])
    expect(order(taskTrees(tasks))).toEqual([['a', [['c', [['d', []]]], ['b', []]]], ['e', []], ['1', []]])
    expect(flattenTrees(taskTrees(tasks)).map((t) => t.id[0])).toEqual(['a', 'c', 'd', 'b', 'e', '1'])
  })

  it('survives a cycle in records from the wire', () => {
    const trees = taskTrees([task('a', { parent: id('b') }), task('b', { parent: id('a'), created: NOW - 5 * MIN })])
    expect(flattenTrees(trees).map((t) => t.id[0]).sort()).toEqual(['a', 'b'])
  })

  it('without --all: the last 24 h or still going, the newest 50 trees', () => {
    const old = task('a', { created: NOW - 25 * HOUR })
    const oldRunning = task('b', { created: NOW - 48 * HOUR, state: 'running', started: NOW - 47 * HOUR })
    const recent = Array.from({ length: 55 }, (_, i) => task((0x100 + i).toString(16).padStart(4, '0'), { created: NOW - (60 - i) * MIN }))
    const child = task('c', { parent: old.id, created: NOW - 1 * MIN })
    const tasks = [old, oldRunning, child, ...recent]
    const sel = selectTaskTrees(tasks, false, NOW)
    expect(sel.trees.length).toBe(50)
    expect(sel.hidden).toBe(7)
    expect(sel.trees.at(-1)!.task.id).toBe(recent.at(-1)!.id)
    expect(flattenTrees(sel.trees).some((t) => t.id === child.id)).toBe(false)
    const few = selectTaskTrees([old, oldRunning, child, recent[0]!], false, NOW)
    expect(few.trees.map((t) => t.task.id)).toEqual([oldRunning.id, recent[0]!.id])
    expect(few.hidden).toBe(1)
    const all = selectTaskTrees(tasks, true, NOW)
    expect(all.trees.length).toBe(57)
    expect(all.hidden).toBe(0)
  })

  it('counts the shards of a fan-out as one submission, shown whole or not at all', () => {
    const fan = Array.from({ length: 60 }, (_, i) => task((0x200 + i).toString(16).padStart(4, '0'), { name: 'sixty', shard: { index: i, count: 60 }, created: NOW - 5 * MIN }))
    const before = Array.from({ length: 60 }, (_, i) => task((0x400 + i).toString(16).padStart(4, '0'), { created: NOW - (70 - i) * MIN }))
    const sel = selectTaskTrees([...before, ...fan], false, NOW)
    // the fan-out whole, and the 49 newest single tasks before it
    expect(sel.trees.filter((t) => t.task.name === 'sixty')).toHaveLength(60)
    expect(sel.trees.filter((t) => t.task.name === undefined)).toHaveLength(49)
    expect(sel.hidden).toBe(11)
    const json = JSON.parse(tasksJson(flattenTrees(sel.trees), sel.hidden)) as { tasks: TaskRecord[], hidden: number }
    expect(json.tasks).toHaveLength(109)
    expect(json.hidden).toBe(11)
  })
})

describe('vgrid task list', () => {
  const tasks = [
    task('a', {
      name: 'pipeline', argv: ['sh', '-c', 'vbatch ./step.sh'], state: 'waiting-children', exitCode: 0, host: 'lab-02', user: 'ann@ws-1',
      created: NOW - 10 * MIN, started: NOW - 9 * MIN, ended: NOW - 8 * MIN - 55_000
    }),
    task('b', { parent: id('a'), argv: ['./step.sh'], state: 'running', host: 'lab-03', created: NOW - 8 * MIN, started: NOW - 245_000 }),
    task('c', { parent: id('b'), argv: ['python', 'x.py'], state: 'queued', created: NOW - 2 * MIN, shard: { index: 1, count: 4 }, name: 'sweep' }),
    task('d', { parent: 'ffffffffffffffff', argv: ['make'], state: 'failed', exitCode: 2, host: 'lab-04', user: 'bob@ws-2', created: NOW - 7 * MIN, started: NOW - 6 * MIN, ended: NOW - 6 * MIN + 850 })
  ]

  it('renders the tree: children indented two spaces a level, orphans at the top', () => {
    expect(renderTaskList(selectTaskTrees(tasks, false, NOW), { now: NOW })).toBe([
      'ID                NAME        STATE             EXIT  USER      HOST    STARTED   DURATION  COMMAND',
      'aaaaaaaaaaaa      pipeline    waiting-children  0     ann@ws-1  lab-02  11:51:00  5.0s      sh -c \'vbatch ./step.sh\'',
      '  bbbbbbbbbbbb    -           running           -     -         lab-03  11:55:55  4m05s     ./step.sh',
      '    cccccccccccc  sweep[1/4]  queued            -     -         -       -         -         python x.py',
      'dddddddddddd      -           failed            2     bob@ws-2  lab-04  11:54:00  850ms     make',
      ''
    ].join('\n'))
  })

  it('shows a start more than a day ago with its date, and tells apart two executors of one host name', () => {
    const twins = [
      task('e', { host: 'vm', peer: '12D3KooWOnePeerIdAaaaSn62Xk', started: NOW - 30 * HOUR, created: NOW - 30 * HOUR, ended: NOW - 29 * HOUR }),
      task('f', { host: 'vm', peer: '12D3KooWTwoPeerIdBbbbQ7wE1z', started: NOW - MIN, created: NOW - MIN, ended: NOW })
    ]
    const text = renderTaskList(selectTaskTrees(twins, true, NOW), { now: NOW })
    expect(text).toContain('vm (…Sn62Xk)  2025-01-01 06:00')
    expect(text).toContain('vm (…Q7wE1z)  11:59:00')
  })

  it('cuts the command to the terminal\'s width', () => {
    const text = renderTaskList(selectTaskTrees([task('e', { argv: ['echo', 'x'.repeat(200)] })], false, NOW), { now: NOW, width: 80 })
    const line = text.split('\n')[1]!
    expect(line.length).toBe(80)
    expect(line.endsWith('…')).toBe(true)
  })

  it('says when there is nothing, or when older tasks were left out', () => {
    expect(renderTaskList(selectTaskTrees([], false, NOW), { now: NOW })).toBe('no tasks\n')
    const old = task('a', { created: NOW - 30 * HOUR })
    expect(renderTaskList(selectTaskTrees([old], false, NOW), { now: NOW })).toBe('no tasks in the last 24 h (1 older; vgrid task list --all shows them)\n')
    expect(renderTaskList(selectTaskTrees([old, task('b')], false, NOW), { now: NOW })).toMatch(/\n\(1 older task tree not shown; --all shows them\)\n$/)
  })

  it('--json: {"tasks": [...]}, parents first', () => {
    const parsed = JSON.parse(tasksJson(flattenTrees(selectTaskTrees(tasks, false, NOW).trees))) as { tasks: TaskRecord[] }
    expect(parsed.tasks.map((t) => t.id[0])).toEqual(['a', 'b', 'c', 'd'])
    expect(parsed.tasks[1]).toEqual(tasks[1])
  })
})

describe('vgrid task show and notices', () => {
  it('shows deps, shard, retries, attempts, children and the error', () => {
    const t = task('a', {
      name: 'train', state: 'lost', error: 'the executor vanished', retries: 1, timeoutMs: 2 * HOUR,
      parent: id('9'), host: 'lab-03', peer: '12D3KooWExecPeerIdXyZ',
      created: NOW - 10 * MIN, started: NOW - 9 * MIN, ended: NOW - MIN,
      deps: [{ kind: 'success', name: 'prep', id: id('b') }, { kind: 'any', name: 'fetch', id: id('c') }],
      shard: { index: 2, count: 8 },
      attempts: [
        { peer: '12D3KooWFirstPeerIdAbc', host: 'lab-02', started: NOW - 9 * MIN, ended: NOW - 5 * MIN, state: 'lost', error: 'the executor vanished' },
        { peer: '12D3KooWExecPeerIdXyZ', host: 'lab-03', started: NOW - 4 * MIN, ended: NOW - MIN, state: 'lost' }
      ],
      children: [id('d'), id('e')],
      history: [
        { at: NOW - 10 * MIN, state: 'pending', why: 'submitted' },
        { at: NOW - 5 * MIN, state: 'queued', why: 'lost: the executor vanished; placed again' }
      ]
    })
    const text = renderTaskShow(t, NOW)
    expect(text).toContain('id        aaaaaaaaaaaaaaaa\n')
    expect(text).toContain('state     lost\n')
    expect(text).toContain('error     the executor vanished\n')
    expect(text).toContain('owner     lab-01 (…AbCdEf)\n')
    expect(text).toContain('host      lab-03 (…rIdXyZ)\n')
    expect(text).toContain('duration  8m00s\n')
    expect(text).toContain('shard     2 of 8')
    expect(text).toContain('timeout   2h00m\n')
    expect(text).toContain('retries   1\n')
    expect(text).toContain('deps      after success of prep (bbbbbbbbbbbb)\n          after the end of fetch (cccccccccccc)\n')
    expect(text).toContain('attempts  1. lab-02 (…rIdAbc)  2025-01-02T11:51:00.000Z → 2025-01-02T11:55:00.000Z  lost: the executor vanished\n')
    expect(text).toContain('          2. lab-03 (…rIdXyZ)')
    expect(text).toContain(`children  ${id('d')}\n          ${id('e')}\n`)
    expect(text).toContain('history   2025-01-02T11:50:00.000Z  pending           submitted\n          2025-01-02T11:55:00.000Z  queued            lost: the executor vanished; placed again\n')
    expect(text).not.toMatch(/ +\n/)
  })

  it('a plain record: dashes for what it lacks', () => {
    const text = renderTaskShow(task('a', { state: 'pending' }), NOW)
    expect(text).toContain('name      -\n')
    expect(text).toContain('started   -\n')
    expect(text).toContain('deps      -\n')
    expect(text).toContain('children  -\n')
  })

  it('formats argv as a shell would read it back', () => {
    expect(formatArgv(['sh', '-c', 'echo "it\'s" $X', 'a=b', ''])).toBe('sh -c \'echo "it\'\\\'\'s" $X\' a=b \'\'')
  })

  it('describes many ids in one line', () => {
    expect(describeIds(['a'])).toBe('a')
    expect(describeIds(['a', 'b', 'c'])).toBe('a, b and c')
    expect(describeIds(['a', 'b', 'c', 'd', 'e'])).toBe('a … e (5 tasks)')
  })

  it('says why a task ended badly only when its exit status does not', () => {
    expect(taskEndNotice(task('a'))).toBeUndefined()
    expect(taskEndNotice(task('a', { state: 'failed', exitCode: 3 }))).toBeUndefined()
    expect(taskEndNotice(task('a', { state: 'upstream-failed', error: 'prep failed' }))).toBe('task aaaaaaaaaaaa upstream-failed: prep failed')
    expect(taskEndNotice(task('a', { state: 'cancelled', exitCode: 143 }))).toBe('task aaaaaaaaaaaa cancelled (its command exited 143)')
  })
})
