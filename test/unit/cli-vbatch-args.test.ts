import { describe, it, expect } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { batchRequest, parseDuration, parseVbatchArgs, VBATCH_OPTIONS } from '../../src/cli/vbatch-args.js'
import { parseBatch } from '../../src/protocol/control.js'
import { taskParent } from '../../src/cli/task-env.js'
import { findWorkspace } from '../../src/fs-sync/workspace.js'
import { UsageError } from '../../src/cli/usage-error.js'

const batch = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const inv = parseVbatchArgs(argv, env)
  if (inv.kind !== 'batch') throw new Error(`expected a batch, got ${inv.kind}`)
  return inv
}

const usageError = (argv: string[], env: NodeJS.ProcessEnv = {}): UsageError => {
  try {
    parseVbatchArgs(argv, env)
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError)
    return err as UsageError
  }
  throw new Error(`expected a usage error for ${argv.join(' ')}`)
}

describe('vbatch arguments', () => {
  it('defaults: one shard, no retries, no timeout, no name, no deps, not following', () => {
    const inv = batch(['make', 'test'])
    expect(inv).toEqual({
      kind: 'batch', spec: { argv: ['make', 'test'], env: {}, cpus: 1, gpus: 0 }, sync: true, quiet: false,
      follow: false, after: [], shards: 1, gang: false, retries: 0
    })
  })

  it('takes vrun\'s options that say what to run and where', () => {
    const inv = batch(['--on', 'lab-03', '-P', 'gpu-a100-2', '--cpus', '8', '-e', 'SEED=7', '-e', 'HOME', '--cwd', 'sub', '-q', 'python', 'train.py'], { HOME: '/home/u' })
    expect(inv.spec).toEqual({ argv: ['python', 'train.py'], env: { SEED: '7', HOME: '/home/u' }, cpus: 8, gpus: 2, gpuModel: 'a100', cwd: 'sub' })
    expect(inv).toMatchObject({ on: 'lab-03', quiet: true, sync: true })
    expect(batch(['--no-sync', 'ls'])).toMatchObject({ sync: false })
    expect(batch(['--workspace', '../ws', 'ls'])).toMatchObject({ workspace: '../ws' })
    expect(batch(['--gpus', '1', '--gpu-model', 'h100', 'ls']).spec).toMatchObject({ gpus: 1, gpuModel: 'h100' })
  })

  it('takes the resource requests with the same meaning as vrun: pools, shapes, memory, GPU memory, labels', () => {
    const GiB = 2 ** 30
    const inv = batch(['-P', 'lab', '-P', 'gpu-a100-2', '--cpus', '4', '--mem', '32G', '--gpu-mem', '40G', '--label', 'room=b12', '--label', 'os=linux', 'sh', 'shard.sh'])
    expect(inv.spec).toEqual({
      argv: ['sh', 'shard.sh'], env: {}, pool: 'lab', cpus: 4, memBytes: 32 * GiB, gpus: 2, gpuModel: 'a100', gpuMemBytes: 40 * GiB,
      labels: { room: 'b12', os: 'linux' }
    })
    expect(batch(['-N', '40', '-P', 'cpu-4', './shard.sh'])).toMatchObject({ shards: 40, spec: { cpus: 4, gpus: 0 } })
    // the seeds' own lines: a shape of one GPU by model, and the README's pool
    expect(batch(['--name', 'training', '-P', 'gpu-a100', 'python', 'train.py']).spec).toMatchObject({ argv: ['python', 'train.py'], cpus: 1, gpus: 1, gpuModel: 'a100' })
    expect(batch(['-P', 'cpu-boxes', 'ls']).spec).toMatchObject({ pool: 'cpu-boxes', cpus: 1, gpus: 0 })
    expect(usageError(['-P', 'Lab', 'ls']).hint).toBe('pool names are lowercase: -P lab')
    expect(usageError(['--gpu-mem', '8G', 'ls']).message).toContain('was asked for without GPUs')
    expect(usageError(['--mem', '16 gigs', 'ls']).message).toContain('--mem "16 gigs" is not valid')
    expect(usageError(['--label', 'room', 'ls']).message).toContain('--label room: expected KEY=VALUE')
  })

  it('has no --tty: nobody is attached', () => {
    expect(VBATCH_OPTIONS.some((o) => o.long === 'tty')).toBe(false)
    expect(usageError(['--tty', 'yes', 'top']).message).toBe('unknown option --tty')
  })

  it('-f/--follow and --name', () => {
    expect(batch(['-f', 'ls']).follow).toBe(true)
    expect(batch(['--follow', 'ls']).follow).toBe(true)
    expect(batch(['--name', 'prep', 'ls']).name).toBe('prep')
    expect(batch(['--name=a', '--name', 'b', 'ls']).name).toBe('b')
  })

  it('keeps the dependencies in command-line order, whatever the option', () => {
    expect(batch(['--after-success', 'a', '--after', 'b', '--after-fail', 'c', '--after-success', 'd', 'ls']).after).toEqual([
      { kind: 'success', name: 'a' }, { kind: 'any', name: 'b' }, { kind: 'fail', name: 'c' }, { kind: 'success', name: 'd' }
    ])
    expect(batch(['--after=x', 'ls']).after).toEqual([{ kind: 'any', name: 'x' }])
  })

  it('-N, --gang, --retries and --timeout', () => {
    expect(batch(['-N', '8', 'ls']).shards).toBe(8)
    expect(batch(['-N4', '--gang', 'ls'])).toMatchObject({ shards: 4, gang: true })
    expect(batch(['--gang', 'ls'])).toMatchObject({ shards: 1, gang: true })
    expect(batch(['--retries', '3', 'ls']).retries).toBe(3)
    expect(batch(['--retries', '0', 'ls']).retries).toBe(0)
    expect(batch(['--timeout', '15m', 'ls']).timeoutMs).toBe(15 * 60_000)
    expect(batch(['--timeout=90', 'ls']).timeoutMs).toBe(90_000)
  })

  it('-N 0 is refused with a clear message', () => {
    const err = usageError(['-N', '0', 'ls'])
    expect(err.message).toBe('-N 0: a batch needs at least one shard')
    expect(err.hint).toBe('leave -N out for a single task')
    expect(usageError(['-N', '00', 'ls']).message).toContain('at least one shard')
  })

  it.each([
    [['-N', 'many', 'ls'], '-N "many" is not a whole number'],
    [['-N', '-2', 'ls'], '-N "-2" is not a whole number'],
    [['-N', '10001', 'ls'], '-N 10001 is out of range (1 to 10000)'],
    [['--retries', '-1', 'ls'], '--retries "-1" is not a whole number'],
    [['--retries', '1001', 'ls'], '--retries 1001 is out of range (0 to 1000)'],
    [['--timeout', 'soon', 'ls'], '--timeout "soon" is not a duration'],
    [['--timeout', '0', 'ls'], '--timeout 0: must be longer than zero'],
    [['--name', '', 'ls'], '--name needs a task name'],
    [['--name', 'a b', 'ls'], '--name "a b": a task name has no blanks'],
    [['--name', 'train[0]', 'ls'], '--name train[0]: a task name may not end in [N]'],
    [['--name', 'train[0/4]', 'ls'], 'may not end in [N]'],
    [['--after-success', '', 'ls'], '--after-success needs a task name'],
    [['--gang=yes', 'ls'], 'option --gang takes no value'],
    [['-N', '2', '--gang', '--on', 'lab-02', 'ls'], '--gang places its shards on several members: it cannot be combined with --on'],
    [['--name'], 'option --name needs a value (NAME)'],
    [['-f'], 'no command given']
  ])('%j → %s', (argv, message) => {
    expect(usageError(argv).message).toContain(message)
  })

  it('refuses more dependencies than the agent takes', () => {
    const argv = Array.from({ length: 257 }, (_, i) => ['--after', `t${i}`]).flat()
    expect(usageError([...argv, 'ls']).message).toBe('257 dependencies: at most 256 may be given')
  })

  it('ends options at the first word: options after CMD go to the command', () => {
    const inv = batch(['-N', '2', 'python', 'train.py', '-N', '3', '--name', 'x', '-f'])
    expect(inv.spec.argv).toEqual(['python', 'train.py', '-N', '3', '--name', 'x', '-f'])
    expect(inv).toMatchObject({ shards: 2, follow: false })
    expect(inv.name).toBeUndefined()
  })

  it('ends options at --, so a command may look like an option', () => {
    expect(batch(['--name', 'a', '--', '--weird', '-f']).spec.argv).toEqual(['--weird', '-f'])
    expect(batch(['--', 'ls']).spec.argv).toEqual(['ls'])
    expect(usageError(['-f', '--']).message).toBe('no command given')
  })

  it('--help and --version before the command; after it, they are the command\'s', () => {
    expect(parseVbatchArgs(['--help'])).toEqual({ kind: 'help' })
    expect(parseVbatchArgs(['-f', '-h', 'ls'])).toEqual({ kind: 'help' })
    expect(parseVbatchArgs(['--version'])).toEqual({ kind: 'version' })
    expect(batch(['ls', '--help']).spec.argv).toEqual(['ls', '--help'])
  })
})

describe('durations', () => {
  it.each([
    ['90', 90_000],
    ['90s', 90_000],
    ['15m', 900_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['1.5h', 5_400_000],
    ['500ms', 500],
    ['2H', 7_200_000],
    [' 10s ', 10_000]
  ])('%j → %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms)
  })

  it.each(['', 'x', '10 s', '-5s', '5w', '1h30m', '.5s', 's', '0', '0s', '0.0001s'])('refuses %j', (text) => {
    expect(() => parseDuration(text, '--timeout')).toThrow(UsageError)
  })

  it('names the option and says how to write one', () => {
    const err = (() => { try { parseDuration('fast', '--timeout') } catch (e) { return e as UsageError } })()!
    expect(err.message).toBe('--timeout "fast" is not a duration')
    expect(err.hint).toContain('90s, 15m, 2h or 1d')
  })

  it('refuses one past what the agent keeps', () => {
    expect(() => parseDuration('20000d')).toThrow(/about 34 years/)
  })
})

describe('the batch request', () => {
  it('carries every option, and passes the agent\'s own validation', () => {
    const inv = batch(['--on', 'lab-02', '--name', 'train', '--after-success', 'prep', '-N', '4', '--retries', '2', '--timeout', '2h', 'python', 'train.py'])
    const req = batchRequest(inv, { dir: '/ws', cwd: 'sub/dir' }, '0123456789abcdef')
    expect(req).toEqual({
      spec: { argv: ['python', 'train.py'], env: {}, cpus: 1, gpus: 0, cwd: 'sub/dir' },
      on: 'lab-02',
      workspace: { dir: '/ws', cwd: 'sub/dir' },
      name: 'train',
      after: [{ kind: 'success', name: 'prep' }],
      shards: 4,
      gang: false,
      retries: 2,
      timeoutMs: 7_200_000,
      parent: '0123456789abcdef'
    })
    expect(parseBatch(req)).toEqual(req)
  })

  it('carries the resource request through the agent\'s validation unchanged', () => {
    const inv = batch(['-P', 'lab', '--gpus', '1', '--gpu-mem', '24G', '--mem', '2G', '--label', 'room=b12', 'ls'])
    const req = batchRequest(inv)
    expect(req.spec).toMatchObject({ pool: 'lab', gpus: 1, gpuMemBytes: 24 * 2 ** 30, memBytes: 2 * 2 ** 30, labels: { room: 'b12' } })
    expect(parseBatch(req)).toEqual(req)
  })

  it('runs in the current directory of the workspace unless --cwd says otherwise; none without a workspace', () => {
    expect(batchRequest(batch(['--cwd', 'other', 'ls']), { dir: '/ws', cwd: 'here' }).spec.cwd).toBe('other')
    const bare = batchRequest(batch(['--no-sync', 'ls']))
    expect(bare.spec.cwd).toBeUndefined()
    expect(bare.workspace).toBeUndefined()
    expect(bare.parent).toBeUndefined()
    expect(parseBatch(bare)).toEqual(bare)
  })
})

describe('inside a task', () => {
  it('VGRID_TASK_ID becomes the parent when it is a task id', () => {
    expect(taskParent({ VGRID_TASK_ID: '0123456789ABCDEF' })).toBe('0123456789abcdef')
    expect(taskParent({ VGRID_TASK_ID: 'not-a-task' })).toBeUndefined()
    expect(taskParent({})).toBeUndefined()
  })

  it('VGRID_WORKSPACE is the workspace root when the current directory is inside it', () => {
    const top = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-ws-')))
    try {
      // a git work tree holding a copy without .git, as on an executor
      fs.mkdirSync(path.join(top, '.git'))
      const copy = path.join(top, 'copies', 'ws1')
      fs.mkdirSync(path.join(copy, 'a', 'b'), { recursive: true })
      const here = path.join(copy, 'a', 'b')
      expect(findWorkspace(here)).toEqual({ dir: top, cwd: 'copies/ws1/a/b' })
      expect(findWorkspace(here, undefined, { VGRID_WORKSPACE: copy })).toEqual({ dir: copy, cwd: 'a/b' })
      // outside it, or with --workspace, the usual rules
      expect(findWorkspace(top, undefined, { VGRID_WORKSPACE: copy })).toEqual({ dir: top, cwd: '' })
      expect(findWorkspace(here, path.join(copy, 'a'), { VGRID_WORKSPACE: copy })).toEqual({ dir: path.join(copy, 'a'), cwd: 'b' })
      expect(findWorkspace(here, undefined, { VGRID_WORKSPACE: path.join(top, 'gone') })).toEqual({ dir: top, cwd: 'copies/ws1/a/b' })
    } finally {
      fs.rmSync(top, { recursive: true, force: true })
    }
  })
})
