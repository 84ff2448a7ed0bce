import { describe, expect, it } from 'vitest'
import { agentSetPatch, parseVgridArgs } from '../../src/cli/vgrid.js'
import { parsePolicyReply, renderPolicy } from '../../src/cli/vgrid-agent-set.js'
import { UsageError } from '../../src/cli/usage-error.js'
import { vgridUsageError } from '../helpers/cli-usage.js'
import { VgridError } from '../../src/common/errors.js'

const usageError = vgridUsageError

describe('vgrid agent with the owner policy', () => {
  it('takes --max-tasks, --nice and --only-when-idle at start', () => {
    expect(parseVgridArgs(['agent', '--max-tasks', '4', '--nice', '15', '--only-when-idle'])).toEqual({
      kind: 'agent', flags: { maxTasks: '4', nice: '15', onlyWhenIdle: true }
    })
    expect(parseVgridArgs(['agent', '--no-only-when-idle'])).toEqual({ kind: 'agent', flags: { onlyWhenIdle: false } })
  })

  it('agent set takes only the policy options', () => {
    expect(parseVgridArgs(['agent', 'set'])).toEqual({ kind: 'agent-set', flags: {} })
    expect(parseVgridArgs(['agent', 'set', '--cpus', '2', '--gpus', '0,1', '--mem', '8G', '--max-tasks', 'unlimited', '--nice', '0', '--no-only-when-idle'])).toEqual({
      kind: 'agent-set', flags: { cpus: '2', gpus: '0,1', mem: '8G', maxTasks: 'unlimited', nice: '0', onlyWhenIdle: false }
    })
    expect(usageError(['agent', 'set', '--join', 'x']).message).toMatch(/option --join does not apply to vgrid agent set/)
    expect(usageError(['agent', 'set', '--pool', 'lab']).message).toMatch(/--pool does not apply/)
    expect(usageError(['agent', 'set', 'now']).message).toMatch(/unexpected argument now/)
    expect(usageError(['agent', 'sett']).message).toMatch(/unexpected argument sett/)
    expect(usageError(['agent', 'set', '--nice']).message).toMatch(/--nice needs a value/)
  })

  it('validates the values before reaching the agent', async () => {
    expect(await agentSetPatch({ nice: '3', onlyWhenIdle: true })).toEqual({ nice: 3, onlyWhenIdle: true })
    await expect(agentSetPatch({ maxTasks: '-1' })).rejects.toThrow(UsageError)
    await expect(agentSetPatch({ nice: '20' })).rejects.toThrow(/--nice: "20" is not valid/)
  })

  it('--help documents the thresholds and agent set', () => {
    const text = (parseVgridArgs(['agent', '--help']) as { text: string }).text
    for (const s of ['--max-tasks <N>', '--nice <N>', '--only-when-idle', '25 % of the cores', '10 s', '60 s', 'SIGKILL', 'vgrid agent set']) expect(text).toContain(s)
  })
})

describe('the policy reply', () => {
  const reply = {
    t: 'policy',
    policy: { host: 'lab-1', cores: 8, memBytes: 32 * 2 ** 30, gpus: [0, 1], offer: { cpus: 4, memBytes: 16 * 2 ** 30, gpus: [1] }, maxTasks: 2, nice: 10, onlyWhenIdle: true, owner: { state: 'busy', load: 61.2 }, running: 1 },
    warnings: ['--cpus 9 is more than this machine\'s 8 cores; sharing 8'],
    saved: '/home/u/.vgrid/config'
  }

  it('prints what is lent and how', () => {
    expect(renderPolicy(parsePolicyReply(reply))).toBe([
      'lab-1 lends 4 of 8 cores, 16 GiB of 32 GiB, GPUs 1 of 0,1',
      '  at once     at most 2 commands (1 running)',
      '  niceness    10',
      '  when        only while its owner is idle: the owner is busy (61 % of the cores), lending nothing now',
      '  from        every member',
      '  warning: --cpus 9 is more than this machine\'s 8 cores; sharing 8',
      'saved in /home/u/.vgrid/config',
      ''
    ].join('\n'))
    const plain = { t: 'policy', policy: { ...reply.policy, gpus: [], offer: { cpus: 8, memBytes: 2 ** 30, gpus: [] }, maxTasks: undefined, onlyWhenIdle: false, owner: undefined }, warnings: [] }
    expect(renderPolicy(parsePolicyReply(plain))).toMatch(/no GPU\n {2}at once {5}no limit \(1 running\)\n.*\n {2}when {8}always\n {2}from {8}every member\n$/)
    const limited = { ...plain, policy: { ...plain.policy, acceptFrom: [{ peer: '12D3KooWA', host: 'ws-2' }, { peer: '12D3KooWB' }] } }
    expect(renderPolicy(parsePolicyReply(limited))).toMatch(/\n {2}from {8}12D3KooWA \(ws-2\)\n {14}12D3KooWB\n$/)
  })

  it('throws the agent\'s error, and refuses a malformed reply', () => {
    expect(() => parsePolicyReply({ t: 'error', error: { code: 'ERR_BAD_ARGUMENT', message: 'no' } })).toThrow(VgridError)
    expect(() => parsePolicyReply({ t: 'peers' })).toThrow(/expected a policy reply/)
    expect(() => parsePolicyReply({ ...reply, policy: { ...reply.policy, cores: 'many' } })).toThrow(/cores is not a number/)
  })
})
