import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { agentConfig, agentSetPatch, parseVgridArgs } from '../../src/cli/vgrid.js'
import { UsageError } from '../../src/cli/usage-error.js'
import { vgridUsageError } from '../helpers/cli-usage.js'
import { VERSION } from '../../src/common/version.js'

const usageError = vgridUsageError

describe('vgrid commands', () => {
  it('peers and status, with and without --json', () => {
    expect(parseVgridArgs(['peers'])).toEqual({ kind: 'peers', json: false })
    expect(parseVgridArgs(['peers', '--json'])).toEqual({ kind: 'peers', json: true })
    expect(parseVgridArgs(['status', '--json'])).toEqual({ kind: 'status', json: true })
    expect(parseVgridArgs(['join-token'])).toEqual({ kind: 'join-token' })
  })

  it('--version prints the package version', () => {
    expect(parseVgridArgs(['--version'])).toEqual({ kind: 'version', text: `vgrid ${VERSION}\n` })
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/)
  })

  it('--help explains the commands, each command explains itself', () => {
    const top = parseVgridArgs(['--help'])
    expect(top.kind).toBe('help')
    const text = (top as { text: string }).text
    for (const c of ['agent', 'peers', 'status', 'join-token']) expect(text).toContain(`  ${c}`)
    expect(text).toContain('Examples:')
    const agent = (parseVgridArgs(['agent', '--help']) as { text: string }).text
    expect(agent).toContain('$ vgrid agent [options]')
    expect(agent).toContain('--join <TOKEN>')
    expect(agent).toContain('creates a new grid')
    expect(agent).not.toMatch(/ +\n/)
    expect((parseVgridArgs(['join-token', '-h']) as { text: string }).text).toContain('secret key')
  })

  it('no command or an unknown one: usage with the whole help', () => {
    expect(usageError([]).showHelp).toBe(true)
    const err = usageError(['frobnicate'])
    expect(err.message).toBe('unknown command frobnicate')
    expect(err.showHelp).toBe(true)
    expect(usageError(['constructor']).showHelp).toBe(true)
  })

  it.each([
    ['tasks', 'vgrid task list'],
    ['logs', 'vgrid task log ID'],
    ['SCANCEL', 'vgrid task cancel ID'],
    ['join', 'vgrid agent --join TOKEN'],
    ['nodes', 'vgrid peers']
  ])('a command of another tool (%s): ours in a hint, and the usage line, not the whole help', (typed, ours) => {
    const err = usageError([typed])
    expect(err.message).toBe(`unknown command ${typed}`)
    expect(err.hint).toBe(`did you mean \`${ours}\`?`)
    expect(err.showHelp).toBe(false)
    expect(err.usage).toBe('usage: vgrid <command> [options]; see vgrid --help')
  })

  it.each([
    [['peers', '--bogus'], 'unknown option --bogus'],
    [['status', '-x'], 'unknown option -x'],
    [['agent', '--gpu-model', 'a100'], 'unknown option --gpu-model'],
    [['peers', 'extra'], 'unexpected argument extra'],
    [['join-token', '--', 'x'], 'unexpected argument x'],
    [['agent', '--join'], 'option --join needs a value (TOKEN)'],
    [['agent', '--cpus', '--mem', '4G'], 'option --cpus needs a value (N)']
  ])('%j → %s, with the command\'s usage line', (argv, message) => {
    const err = usageError(argv)
    expect(err.message).toBe(message)
    expect(err.usage).toBe(`usage: vgrid ${argv[0]} [options]; see vgrid ${argv[0]} --help`)
  })
})

describe('vgrid agent flags', () => {
  let home: string
  const env = (): NodeJS.ProcessEnv => ({ VGRID_HOME: home })
  beforeEach(() => { home = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-cli-')) })
  afterEach(() => { fs.rmSync(home, { recursive: true, force: true }) })

  const flagsOf = (argv: string[]) => {
    const inv = parseVgridArgs(['agent', ...argv])
    if (inv.kind !== 'agent') throw new Error('expected agent')
    return inv.flags
  }

  it('passes flags as strings, repeatable ones as lists', () => {
    expect(flagsOf(['--cpus', '8', '--gpus', '0', '--mem', '16G', '--pool', 'lab', '--pool', 'gpu1x', '--label', 'rack=b2', '--peer', '/ip4/10.0.0.2/tcp/7321'])).toEqual({
      cpus: '8', gpus: '0', mem: '16G', pool: ['lab', 'gpu1x'], label: ['rack=b2'], peer: ['/ip4/10.0.0.2/tcp/7321']
    })
    expect(flagsOf(['--gpus', '0,1'])).toEqual({ gpus: '0,1' })
    expect(flagsOf(['--cpus', '2', '--cpus', '4'])).toEqual({ cpus: '4' })
  })

  it('takes the join token from a file, or - for stdin', () => {
    expect(flagsOf(['--join-file', '/etc/vgrid/token'])).toEqual({ joinFile: '/etc/vgrid/token' })
    expect(flagsOf(['--join', '-', '--cpus', '2'])).toEqual({ join: '-', cpus: '2' })
    expect(flagsOf(['--join=-'])).toEqual({ join: '-' })
  })

  it('keeps values as typed: no numbers made of them, a negative one is a value', async () => {
    expect(flagsOf(['--pool', '007', '--pool=1e3', '--label', 'v=010'])).toEqual({ pool: ['007', '1e3'], label: ['v=010'] })
    expect(flagsOf(['--nice', ''])).toEqual({ nice: '' })
    expect(flagsOf(['--nice', '-5'])).toEqual({ nice: '-5' })
    await expect(agentConfig(flagsOf(['--nice', '']), env())).rejects.toThrow('--nice: "" is not valid')
    await expect(agentConfig(flagsOf(['--gpus', '']), env())).rejects.toThrow('--gpus: "" is not valid')
    await expect(agentConfig(flagsOf(['--cpus', '-1']), env())).rejects.toThrow('--cpus: "-1" is not valid')
    const set = parseVgridArgs(['agent', 'set', '--nice', '-1'])
    expect(set).toEqual({ kind: 'agent-set', flags: { nice: '-1' } })
  })

  it('--version after a command prints the version rather than running it', () => {
    expect(parseVgridArgs(['agent', '--version'])).toEqual({ kind: 'version', text: `vgrid ${VERSION}\n` })
    expect(parseVgridArgs(['peers', '-v'])).toEqual({ kind: 'version', text: `vgrid ${VERSION}\n` })
  })

  it('resolves valid flags into the agent configuration', async () => {
    const config = await agentConfig(flagsOf(['--cpus', '8', '--gpus', '0,1', '--mem', '16G', '--label', 'rack=b2', '--listen', '/ip4/127.0.0.1/tcp/0']), env())
    expect(config.home).toBe(home)
    expect(config.share).toMatchObject({ cpus: 8, gpus: [0, 1], memBytes: 16 * 2 ** 30, labels: { rack: 'b2' } })
    expect(config.listen).toEqual(['/ip4/127.0.0.1/tcp/0'])
  })

  it.each([
    [['--cpus', 'many'], '--cpus'],
    [['--cpus', '-1'], '--cpus'],
    [['--gpus', 'two'], '--gpus'],
    [['--mem', '16Q'], '--mem'],
    [['--label', 'novalue'], '--label'],
    [['--pool', 'Bad Name'], '--pool'],
    [['--listen', 'localhost:7321'], '--listen']
  ])('refuses %j before loading the agent, naming %s', async (argv, flag) => {
    const err = await agentConfig(flagsOf(argv), env()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UsageError)
    expect((err as UsageError).message).toContain(flag)
    expect((err as UsageError).usage).toBe('usage: vgrid agent [options]; see vgrid agent --help')
  })
})

describe('vgrid agent set and stop errors', () => {
  it('print the usage of agent set or agent stop, not that of starting an agent', async () => {
    const caught = async (fn: () => unknown): Promise<UsageError> => {
      try { await fn() } catch (err) { return err as UsageError }
      throw new Error('no error')
    }
    const unknown = await caught(() => parseVgridArgs(['agent', 'set', '--pool', 'x']))
    expect(unknown.usage).toMatch(/^usage: vgrid agent set \[--cpus N\|all\]/)
    const inv = parseVgridArgs(['agent', 'set', '--nice', '99'])
    if (inv.kind !== 'agent-set') throw new Error(`parsed as ${inv.kind}`)
    const badValue = await caught(async () => await agentSetPatch(inv.flags))
    expect(badValue).toBeInstanceOf(UsageError)
    expect(badValue.usage).toMatch(/^usage: vgrid agent set /)
    const stop = await caught(() => parseVgridArgs(['agent', 'stop', '--cpus', '2']))
    expect(stop.usage).toBe('usage: vgrid agent stop [--drain]; see vgrid agent --help')
  })
})
