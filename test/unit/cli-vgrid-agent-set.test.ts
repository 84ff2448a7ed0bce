import { describe, expect, it } from 'vitest'
import { agentSetPatch, parseVgridArgs } from '../../src/cli/vgrid.js'
import { parsePolicyReply, renderPolicy } from '../../src/cli/vgrid-agent-set.js'
import { describeCount, parseStopReply, renderStopReply } from '../../src/cli/vgrid-agent-stop.js'
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

  it('agent set takes --pause or --resume, not both, and not at start', async () => {
    expect(parseVgridArgs(['agent', 'set', '--pause'])).toEqual({ kind: 'agent-set', flags: { pause: true } })
    expect(parseVgridArgs(['agent', 'set', '--resume', '--cpus', '0'])).toEqual({ kind: 'agent-set', flags: { resume: true, cpus: '0' } })
    expect(await agentSetPatch({ pause: true })).toEqual({ paused: true })
    expect(await agentSetPatch({ resume: true, cpus: '0', maxTasks: '0' })).toEqual({ paused: false, cpus: 0, maxTasks: 0 })
    await expect(agentSetPatch({ pause: true, resume: true })).rejects.toThrow(/--pause and --resume cannot be given together/)
    expect(usageError(['agent', 'set', '--pause=yes']).message).toMatch(/unexpected argument yes/)
    expect(usageError(['agent', 'set', '--no-pause']).message).toMatch(/--no-pause is not an option/)
    expect(usageError(['agent', '--pause']).message).toMatch(/option --pause applies to vgrid agent set, not to starting an agent/)
    expect(usageError(['agent', '--drain']).message).toMatch(/option --drain applies to vgrid agent stop/)
    expect(usageError(['agent', 'set', '--drain']).message).toMatch(/option --drain does not apply to vgrid agent set/)
  })

  it('agent stop takes only --drain', () => {
    expect(parseVgridArgs(['agent', 'stop'])).toEqual({ kind: 'agent-stop', drain: false })
    expect(parseVgridArgs(['agent', 'stop', '--drain'])).toEqual({ kind: 'agent-stop', drain: true })
    expect(usageError(['agent', 'stop', '--pause']).message).toMatch(/option --pause does not apply to vgrid agent stop/)
    expect(usageError(['agent', 'stop', '--cpus', '2']).message).toMatch(/option --cpus does not apply to vgrid agent stop/)
    expect(usageError(['agent', 'stop', 'now']).message).toMatch(/unexpected argument now/)
    expect(usageError(['agent', 'stop', '--drain=soon']).message).toMatch(/unexpected argument soon/)
    expect(usageError(['agent', 'stop', '--no-drain']).message).toMatch(/--no-drain is not an option/)
  })

  it('validates the values before reaching the agent', async () => {
    expect(await agentSetPatch({ nice: '3', onlyWhenIdle: true })).toEqual({ nice: 3, onlyWhenIdle: true })
    await expect(agentSetPatch({ maxTasks: '-1' })).rejects.toThrow(UsageError)
    await expect(agentSetPatch({ nice: '20' })).rejects.toThrow(/--nice: "20" is not valid/)
  })

  it('--help documents the thresholds and agent set', () => {
    const text = (parseVgridArgs(['agent', '--help']) as { text: string }).text
    for (const s of ['--max-tasks <N>', '--nice <N>', '--only-when-idle', '25 % of the cores', '10 s', '60 s', 'SIGKILL', 'vgrid agent set']) expect(text).toContain(s)
    for (const s of ['--pause', '--resume', 'vgrid agent stop [--drain]', 'across a restart', 'Ctrl-C there leaves the agent draining', '--cpus 0 lends no core']) expect(text).toContain(s)
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

describe('the policy reply while paused or draining', () => {
  const policy = { host: 'lab-1', cores: 8, memBytes: 2 ** 30, gpus: [], offer: { cpus: 8, memBytes: 2 ** 30, gpus: [] }, nice: 10, onlyWhenIdle: false, running: 1 }
  it('says so under what is lent, and how to lend again', () => {
    expect(renderPolicy(parsePolicyReply({ t: 'policy', policy: { ...policy, lending: 'paused' }, warnings: [] }))).toMatch(/cores, 1 GiB of 1 GiB, no GPU\n {2}paused {6}it takes no new command; the running ones go on \(vgrid agent set --resume lends again\)\n/)
    expect(renderPolicy(parsePolicyReply({ t: 'policy', policy: { ...policy, lending: 'draining' }, warnings: [] }))).toMatch(/\n {2}draining {4}it takes no new command and stops once/)
    expect(renderPolicy(parsePolicyReply({ t: 'policy', policy: { ...policy, lending: 'yes' }, warnings: [] }))).not.toMatch(/paused|draining/)
  })
})

describe('vgrid agent stop output', () => {
  it('says what the drain waits for, and again as it ends', () => {
    const first = renderStopReply(parseStopReply({ t: 'draining', host: 'lab-1', count: { guests: 2, others: 1 } }), true, true)
    expect(first).toBe('lab-1 is draining: it takes no new command, and stops once the 2 guest commands and 1 other command running there have ended\n' +
      '(Ctrl-C here stops only this wait: the agent drains on)\n')
    expect(renderStopReply(parseStopReply({ t: 'draining', host: 'lab-1', count: { guests: 1, others: 0 } }), true, false)).toBe('lab-1: 1 guest command still running\n')
    expect(renderStopReply(parseStopReply({ t: 'stopping', host: 'lab-1', pid: 42, count: { guests: 0, others: 0 } }), true, false)).toBe('lab-1: nothing runs there any more: the agent stops\n')
    expect(renderStopReply(parseStopReply({ t: 'stopping', host: 'lab-1', pid: 42, count: { guests: 0, others: 2 } }), false, true)).toBe('lab-1: the agent stops, ending the 2 commands running there\n')
    expect(renderStopReply(parseStopReply({ t: 'resumed', host: 'lab-1' }), true, false)).toMatch(/drain was called off/)
    expect(describeCount({ guests: 0, others: 0 })).toBe('nothing')
  })

  it('throws the agent\'s error, and refuses a malformed reply', () => {
    expect(() => parseStopReply({ t: 'error', error: { code: 'ERR_NOT_ALLOWED', message: 'no' } })).toThrow(VgridError)
    expect(() => parseStopReply({ t: 'policy', host: 'x' })).toThrow(/expected a reply to agent stop/)
    expect(() => parseStopReply({ t: 'stopping', host: 'x', pid: 0, count: { guests: 0, others: 0 } })).toThrow(/pid/)
    expect(() => parseStopReply({ t: 'draining', host: 'x', count: { guests: -1, others: 0 } })).toThrow(/count.guests/)
  })
})
