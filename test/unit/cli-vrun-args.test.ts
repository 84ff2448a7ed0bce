import { describe, it, expect } from 'vitest'
import { parseVrunArgs, parseShape, splitVrunArgv } from '../../src/cli/vrun-args.js'
import { isShapeName } from '../../src/common/resources.js'
import { UsageError } from '../../src/cli/usage-error.js'

const run = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const inv = parseVrunArgs(argv, env)
  if (inv.kind !== 'run') throw new Error(`expected a run, got ${inv.kind}`)
  return inv
}

const usageError = (argv: string[], env: NodeJS.ProcessEnv = {}): UsageError => {
  try {
    parseVrunArgs(argv, env)
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError)
    return err as UsageError
  }
  throw new Error(`expected a usage error for ${argv.join(' ')}`)
}

describe('vrun argument splitting', () => {
  it('ends options at the first word: the rest belongs to the command', () => {
    const inv = run(['ls', '-la', '--cpus', '4'])
    expect(inv.spec.argv).toEqual(['ls', '-la', '--cpus', '4'])
    expect(inv.spec.cpus).toBe(1)
  })

  it('reads options before the command', () => {
    const inv = run(['--cpus', '4', '--gpus=2', '--on', 'lab-03', 'python', 'train.py', '--epochs', '3'])
    expect(inv.spec).toMatchObject({ argv: ['python', 'train.py', '--epochs', '3'], cpus: 4, gpus: 2 })
    expect(inv.on).toBe('lab-03')
  })

  it('ends options at --, so a command may look like an option', () => {
    expect(run(['--cpus', '2', '--', '--weird', '-x']).spec.argv).toEqual(['--weird', '-x'])
    expect(run(['--', 'ls']).spec.argv).toEqual(['ls'])
  })

  it('takes the next word as a value even when it starts with -', () => {
    expect(run(['-e', '-X=1', 'env']).spec.env).toEqual({ '-X': '1' })
  })

  it('defaults: 1 core, no GPU, tty auto, no peer, no cwd', () => {
    const inv = run(['true'])
    expect(inv.spec).toEqual({ argv: ['true'], env: {}, cpus: 1, gpus: 0 })
    expect(inv.tty).toBe('auto')
    expect(inv.on).toBeUndefined()
  })

  it('keeps values as typed (no number coercion)', () => {
    expect(run(['--cwd', '010', 'ls']).spec.cwd).toBe('010')
    expect(run(['--on', '1e3', 'ls']).on).toBe('1e3')
  })

  it('splits without validating, for the help and the usage checks', () => {
    const { values, command } = splitVrunArgv(['-eA=1', '--env', 'B', '-P', 'gpu-1', 'x'])
    expect(values.get('env')).toEqual(['A=1', 'B'])
    expect(values.get('P')).toEqual(['gpu-1'])
    expect(command).toEqual(['x'])
  })
})

describe('vrun -e', () => {
  it('sets KEY=VAL, with = allowed in the value', () => {
    expect(run(['-e', 'A=1', '-e', 'B=x=y', '-e', 'C=', 'env']).spec.env).toEqual({ A: '1', B: 'x=y', C: '' })
  })

  it('copies KEY from the environment', () => {
    expect(run(['-e', 'HOME', '--env=SEED', 'env'], { HOME: '/home/u', SEED: '7' }).spec.env).toEqual({ HOME: '/home/u', SEED: '7' })
  })

  it('accepts the attached form -eKEY=VAL', () => {
    expect(run(['-eA=1', 'env']).spec.env).toEqual({ A: '1' })
  })

  it('refuses a KEY that is not set here, naming it', () => {
    const err = usageError(['-e', 'NOPE', 'env'])
    expect(err.message).toBe('-e NOPE: NOPE is not set in this environment')
    expect(err.hint).toContain('-e NOPE=VALUE')
  })

  it('refuses an empty key', () => {
    expect(usageError(['-e', '=x', 'env']).message).toContain('expected KEY=VAL or KEY')
  })
})

describe('vrun -P shapes', () => {
  // The seeds' own spellings (Velda's docs) first.
  it.each([
    ['cpu-16', { cpus: 16, gpus: 0 }],
    ['cpu-8', { cpus: 8, gpus: 0 }],
    ['gpu-1', { cpus: 1, gpus: 1 }],
    ['gpu-8', { cpus: 1, gpus: 8 }],
    ['gpu-a100', { cpus: 1, gpus: 1, gpuModel: 'a100' }],
    ['gpu-a100-8', { cpus: 1, gpus: 8, gpuModel: 'a100' }],
    ['gpu-a100-2', { cpus: 1, gpus: 2, gpuModel: 'a100' }],
    ['gpu-a100-sxm4', { cpus: 1, gpus: 1, gpuModel: 'a100-sxm4' }],
    ['gpu-a100-sxm4-4', { cpus: 1, gpus: 4, gpuModel: 'a100-sxm4' }],
    ['gpu-rtx-4090-1', { cpus: 1, gpus: 1, gpuModel: 'rtx-4090' }],
    ['gpu-l40s', { cpus: 1, gpus: 1, gpuModel: 'l40s' }],
    ['GPU-H100-8', { cpus: 1, gpus: 8, gpuModel: 'H100' }],
    ['Cpu-4', { cpus: 4, gpus: 0 }]
  ])('%s', (shape, want) => {
    expect(isShapeName(shape)).toBe(true)
    expect(parseShape(shape)).toEqual(want)
    expect(run(['-P', shape, 'x']).spec).toEqual({ argv: ['x'], env: {}, ...want })
  })

  it('lets explicit flags win over the shape', () => {
    expect(run(['-P', 'gpu-a100-2', '--cpus', '8', 'x']).spec).toMatchObject({ cpus: 8, gpus: 2, gpuModel: 'a100' })
    expect(run(['--cpus', '8', '-P', 'gpu-2', 'x']).spec).toMatchObject({ cpus: 8, gpus: 2 })
    expect(run(['-Pgpu-2', '--gpu-model', 'h100', 'x']).spec).toMatchObject({ gpus: 2, gpuModel: 'h100' })
    expect(run(['-P', 'gpu-a100', '--gpus', '3', 'x']).spec).toMatchObject({ gpus: 3, gpuModel: 'a100' })
  })

  it('refuses a zero or huge count', () => {
    expect(usageError(['-P', 'gpu-0', 'x']).message).toContain('out of range')
    expect(usageError(['-P', 'cpu-0', 'x']).message).toContain('out of range')
    expect(usageError(['-P', 'gpu-a100-0', 'x']).message).toContain('out of range')
    expect(usageError(['-P', 'cpu-99999999', 'x']).message).toContain('out of range')
  })

  it('reads a final -DIGITS as the count, and says so when that was meant as the model', () => {
    const err = usageError(['-P', 'gpu-rtx-4090', 'x'])
    expect(err.message).toBe('-P gpu-rtx-4090: count 4090 is out of range (1 to 64)')
    expect(err.hint).toContain('the number after the last hyphen is the count')
    expect(err.hint).toContain('-P gpu-rtx-4090-1')
  })
})

describe('vrun -P pools', () => {
  it('reads any name that is not exactly a shape as a pool', () => {
    expect(run(['-P', 'lab', 'x']).spec).toEqual({ argv: ['x'], env: {}, cpus: 1, gpus: 0, pool: 'lab' })
    // the README's own pool
    expect(run(['-P', 'cpu-boxes', 'x']).spec).toEqual({ argv: ['x'], env: {}, cpus: 1, gpus: 0, pool: 'cpu-boxes' })
    expect(run(['-P', 'tpu-4', 'x']).spec.pool).toBe('tpu-4')
    expect(run(['-Pgpus.b2', 'x']).spec.pool).toBe('gpus.b2')
    for (const name of ['gpu', 'cpu', 'gpus', 'cpus-8', 'cpu-', 'cpu-x-2', 'cpu-8-fast', 'gpu--2', 'gpu-a100-', 'gpu-1a', 'gpu-.x', 'a100-gpu', '8-gpu']) {
      expect(isShapeName(name), name).toBe(false)
      expect(run(['-P', name, 'x']).spec, name).toEqual({ argv: ['x'], env: {}, cpus: 1, gpus: 0, pool: name })
    }
  })

  it('takes a pool and a shape together, the last of each kind counting', () => {
    expect(run(['-P', 'lab', '-P', 'gpu-a100-2', 'x']).spec).toMatchObject({ pool: 'lab', cpus: 1, gpus: 2, gpuModel: 'a100' })
    expect(run(['-P', 'cpu-boxes', '-P', 'cpu-2', 'x']).spec).toMatchObject({ pool: 'cpu-boxes', cpus: 2, gpus: 0 })
    expect(run(['-P', 'cpu-4', '-P', 'a', '-P', 'b', '-P', 'gpu-1', 'x']).spec).toMatchObject({ pool: 'b', cpus: 1, gpus: 1 })
    expect(run(['-P', 'lab', '--cpus', '3', 'x']).spec).toMatchObject({ pool: 'lab', cpus: 3, gpus: 0 })
  })

  it('refuses a name that is neither, saying how a pool is spelled', () => {
    const upper = usageError(['-P', 'Lab', 'x'])
    expect(upper.message).toBe('-P Lab: not a pool name or a resource shape')
    expect(upper.hint).toBe('pool names are lowercase: -P lab')
    expect(usageError(['-P', 'CPU-a-1', 'x']).hint).toBe('pool names are lowercase: -P cpu-a-1')
    expect(usageError(['-P', 'a b', 'x']).hint).toContain('a pool name is 1–63 of a-z 0-9')
    expect(usageError(['-P', 'a b', 'x']).hint).toContain('a shape is cpu-N, gpu-N, gpu-MODEL or gpu-MODEL-N')
    expect(usageError(['-P', '', 'x']).message).toContain('not a pool name')
    expect(usageError(['-P', `p${'x'.repeat(63)}`, 'x']).message).toContain('not a pool name')
  })
})

describe('vrun --mem, --gpu-mem and --label', () => {
  const GiB = 2 ** 30

  it('reads sizes with binary units', () => {
    expect(run(['--mem', '16G', 'x']).spec.memBytes).toBe(16 * GiB)
    expect(run(['--mem=512MiB', 'x']).spec.memBytes).toBe(512 * 2 ** 20)
    expect(run(['--gpus', '1', '--gpu-mem', '40GB', 'x']).spec).toMatchObject({ gpus: 1, gpuMemBytes: 40 * GiB })
    expect(run(['-P', 'gpu-a100-2', '--gpu-mem', '80G', '--mem', '1.5T', 'x']).spec)
      .toMatchObject({ gpus: 2, gpuModel: 'a100', gpuMemBytes: 80 * GiB, memBytes: 1.5 * 1024 * GiB })
  })

  it('collects labels, every one to match', () => {
    expect(run(['--label', 'room=b12', '--label', 'os=linux', 'x']).spec.labels).toEqual({ room: 'b12', os: 'linux' })
    expect(run(['--label', 'k=a=b', '--label', 'empty=', 'x']).spec.labels).toEqual({ k: 'a=b', empty: '' })
    expect(run(['--label', 'room=b12', '--label', 'room=b12', 'x']).spec.labels).toEqual({ room: 'b12' })
    expect(run(['x']).spec.labels).toBeUndefined()
  })

  it('combines everything into one request', () => {
    const spec = run(['-P', 'lab', '-P', 'gpu-2', '--cpus', '4', '--mem', '8G', '--gpu-model', 'rtx', '--gpu-mem', '20G', '--label', 'room=b12', 'x']).spec
    expect(spec).toEqual({ argv: ['x'], env: {}, pool: 'lab', cpus: 4, memBytes: 8 * GiB, gpus: 2, gpuModel: 'rtx', gpuMemBytes: 20 * GiB, labels: { room: 'b12' } })
  })

  it.each([
    [['--mem', 'lots', 'x'], '--mem "lots" is not valid: expected a size such as 512M'],
    [['--mem', '0', 'x'], '--mem 0: must be more than zero'],
    [['--mem', '-1G', 'x'], '--mem "-1G" is not valid'],
    [['--mem', '99999999T', 'x'], 'is too large'],
    [['--gpus', '1', '--gpu-mem', '40 gigs', 'x'], '--gpu-mem "40 gigs" is not valid'],
    [['--gpu-mem', '40G', 'x'], 'GPU memory (40 GiB) was asked for without GPUs'],
    [['-P', 'gpu-1', '--gpus', '0', '--gpu-model', 'a100', 'x'], 'a GPU model (a100) was asked for without GPUs'],
    [['--label', 'room', 'x'], '--label room: expected KEY=VALUE'],
    [['--label', '=b12', 'x'], '--label =b12: expected KEY=VALUE'],
    [['--label', 'a b=c', 'x'], 'expected KEY=VALUE'],
    [['--label', 'k=line\nbreak', 'x'], 'control characters'],
    [['--label', `k=${'v'.repeat(257)}`, 'x'], 'longer than 256 characters'],
    [['--label', 'room=a', '--label', 'room=b', 'x'], '--label room is given twice with different values (a, b)']
  ])('%j → %s', (argv, message) => {
    expect(usageError(argv).message).toContain(message)
  })

  it('refuses more labels than a member can have', () => {
    const many = Array.from({ length: 65 }, (_, i) => ['--label', `k${i}=v`]).flat()
    expect(usageError([...many, 'x']).message).toContain('at most 64 labels')
  })
})

describe('vrun usage errors', () => {
  it('no command: usage with the whole help', () => {
    const err = usageError([])
    expect(err.message).toBe('no command given')
    expect(err.showHelp).toBe(true)
    expect(usageError(['--cpus', '2']).message).toBe('no command given')
    expect(usageError(['--']).message).toBe('no command given')
  })

  it.each([
    [['--bogus', 'ls'], 'unknown option --bogus'],
    [['-x', 'ls'], 'unknown option -x'],
    [['--cpus'], 'option --cpus needs a value (N)'],
    [['--cpus', 'four', 'ls'], '--cpus "four" is not a whole number'],
    [['--cpus', '-1', 'ls'], '--cpus "-1" is not a whole number'],
    [['--gpus', '65', 'ls'], '--gpus 65 is out of range (0 to 64)'],
    [['--tty', 'maybe', 'ls'], '--tty maybe: expected yes, no or auto'],
    [['--help=yes', 'ls'], 'option --help takes no value'],
    [['--cwd', '/abs', 'ls'], '--cwd /abs: must be relative to the workspace'],
    [['--cwd', 'a/../../b', 'ls'], '--cwd a/../../b: leaves the workspace'],
    [['--gpu-model', 'a100', 'ls'], 'a GPU model (a100) was asked for without GPUs'],
    [['--on', '', 'ls'], '--on needs a peer id']
  ])('%j → %s', (argv, message) => {
    expect(usageError(argv).message).toContain(message)
  })

  it('takes a command line as long as Linux does, and says what is too long', () => {
    const many = Array.from({ length: 99_000 }, (_, i) => String(i))
    expect(run(['sh', '-c', 'echo $#', 'x', ...many]).spec.argv).toHaveLength(99_004)
    expect(usageError(['sh', ...many, ...many]).message).toContain('the command has 198,001 arguments (')
    expect(usageError(['sh', ...many, ...many]).message).toContain('at most 100,000 arguments and 2 MiB travel')
    expect(usageError(['echo', 'x'.repeat(200 * 1024)]).message).toContain('argument 1 is 204800 bytes')
  })
})

describe('vrun help, version, tty and cwd', () => {
  it('--help and --version before the command', () => {
    expect(parseVrunArgs(['--help'])).toEqual({ kind: 'help' })
    expect(parseVrunArgs(['-h', 'ls'])).toEqual({ kind: 'help' })
    expect(parseVrunArgs(['--version'])).toEqual({ kind: 'version' })
  })

  it('--help after the command goes to the command', () => {
    expect(run(['ls', '--help']).spec.argv).toEqual(['ls', '--help'])
  })

  it('reads --tty', () => {
    expect(run(['--tty', 'yes', 'top']).tty).toBe('yes')
    expect(run(['--tty=no', 'top']).tty).toBe('no')
  })

  it('normalises --cwd', () => {
    expect(run(['--cwd', './src//cli/', 'ls']).spec.cwd).toBe('src/cli/')
  })
})
