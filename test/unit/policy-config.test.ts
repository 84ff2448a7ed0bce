import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  applyPolicyPatch, checkPolicyPatch, DEFAULT_NICE, policyPatch, resolveAgentConfig, savePolicyPatch,
  type AgentFlags, type OwnerPolicy, type PolicyPatch
} from '../../src/agent/config.js'
import { parseControlRequest } from '../../src/protocol/control.js'
import { badArg } from '../helpers/bad-arg.js'

let home: string
let env: NodeJS.ProcessEnv

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'vgrid-policy-'))
  env = { VGRID_HOME: home, HOME: '/nonexistent' }
})
afterEach(() => { rmSync(home, { recursive: true, force: true }) })

describe('the owner policy at start', () => {
  it('defaults to nice 10, no task limit, lending always', () => {
    expect(resolveAgentConfig({}, env).policy).toEqual({ nice: DEFAULT_NICE, onlyWhenIdle: false })
    expect(DEFAULT_NICE).toBe(10)
  })

  it.each<[AgentFlags, NodeJS.ProcessEnv, unknown, OwnerPolicy]>([
    [{ maxTasks: '4', nice: '0', onlyWhenIdle: true }, {}, undefined, { maxTasks: 4, nice: 0, onlyWhenIdle: true }],
    [{ maxTasks: 'unlimited' }, { VGRID_MAX_TASKS: '2' }, { maxTasks: 3 }, { nice: 10, onlyWhenIdle: false }],
    [{}, { VGRID_MAX_TASKS: '2', VGRID_NICE: '19', VGRID_ONLY_WHEN_IDLE: '1' }, { maxTasks: 3, nice: 5, onlyWhenIdle: false }, { maxTasks: 2, nice: 19, onlyWhenIdle: true }],
    [{ onlyWhenIdle: false }, {}, { maxTasks: 3, nice: 5, onlyWhenIdle: true }, { maxTasks: 3, nice: 5, onlyWhenIdle: false }],
    [{ onlyWhenIdle: 'yes' }, { VGRID_ONLY_WHEN_IDLE: 'false' }, undefined, { nice: 10, onlyWhenIdle: true }]
  ])('flags %j > env %j > file %j', (flags, e, file, want) => {
    if (file !== undefined) writeFileSync(join(home, 'config'), JSON.stringify(file))
    expect(resolveAgentConfig(flags, { ...env, ...e }).policy).toEqual(want)
  })

  it.each<[AgentFlags, RegExp]>([
    [{ nice: '-1' }, /--nice: "-1" is not valid: expected a niceness from 0/],
    [{ nice: '20' }, /--nice/],
    [{ nice: '2.5' }, /--nice/],
    [{ maxTasks: '-1' }, /--max-tasks: "-1" is not valid.*\(0 to 100000; 0: none\), or unlimited/],
    [{ maxTasks: 'lots' }, /--max-tasks/],
    [{ maxTasks: '1000001' }, /--max-tasks/],
    [{ onlyWhenIdle: 'maybe' }, /--only-when-idle: "maybe" is not valid: expected true or false/]
  ])('refuses %j', (flags, message) => {
    expect(badArg(() => resolveAgentConfig(flags, env)).message).toMatch(message)
  })

  it('names the variable or the file field that is wrong', () => {
    expect(badArg(() => resolveAgentConfig({}, { ...env, VGRID_NICE: 'low' })).message).toMatch(/^VGRID_NICE:/)
    writeFileSync(join(home, 'config'), JSON.stringify({ onlyWhenIdle: 'often' }))
    expect(badArg(() => resolveAgentConfig({}, env)).message).toMatch(/config: field "onlyWhenIdle"/)
  })

  it('takes all for --cpus and --mem, meaning the whole machine', () => {
    writeFileSync(join(home, 'config'), JSON.stringify({ cpus: 2, mem: '1G' }))
    const c = resolveAgentConfig({ cpus: 'all', mem: 'ALL' }, env)
    expect(c.share.cpus).toBeUndefined()
    expect(c.share.memBytes).toBeUndefined()
    expect(badArg(() => resolveAgentConfig({ cacheSize: 'all' }, env)).message).toMatch(/--cache-size/)
  })
})

describe('--accept-from', () => {
  const A = '12D3KooWMvBVSe685eBfT9D3eacBD7kePkeWDRxXMsuEsFfJU1xk'
  const B = 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'

  it('takes peer ids from a flag (repeated or comma-separated), VGRID_ACCEPT_FROM or the file; all = every member', () => {
    expect(resolveAgentConfig({ acceptFrom: [`${A},${B}`, A] }, env).policy.acceptFrom).toEqual([A, B])
    expect(resolveAgentConfig({}, { ...env, VGRID_ACCEPT_FROM: B }).policy.acceptFrom).toEqual([B])
    writeFileSync(join(home, 'config'), JSON.stringify({ acceptFrom: [A] }))
    expect(resolveAgentConfig({}, env).policy.acceptFrom).toEqual([A])
    expect(resolveAgentConfig({ acceptFrom: 'all' }, env).policy.acceptFrom).toBeUndefined()
  })

  it('at start, refuses what is not a peer id (a host name is resolved only by agent set)', () => {
    expect(badArg(() => resolveAgentConfig({ acceptFrom: 'lab-ws2' }, env)).message).toMatch(/--accept-from: "lab-ws2" is not valid: expected all, or members by peer id/)
    expect(badArg(() => resolveAgentConfig({ acceptFrom: [A, 'all'] }, env)).message).toMatch(/all cannot be combined/)
  })

  it('in agent set, also takes names for the agent to resolve, and saves only peer ids', () => {
    expect(policyPatch({ acceptFrom: ['lab-ws2', A] })).toEqual({ acceptFrom: ['lab-ws2', A] })
    expect(checkPolicyPatch({ acceptFrom: 'all' })).toEqual({ acceptFrom: 'all' })
    expect(() => checkPolicyPatch({ acceptFrom: ['a b'] })).toThrow(/acceptFrom/)
    const p = applyPolicyPatch({ pools: [], labels: {} }, { nice: 10, onlyWhenIdle: false }, { acceptFrom: [A] }).policy
    expect(p.acceptFrom).toEqual([A])
    expect(applyPolicyPatch({ pools: [], labels: {} }, p, { acceptFrom: 'all' }).policy.acceptFrom).toBeUndefined()
    savePolicyPatch(home, { acceptFrom: [A] })
    expect(JSON.parse(readFileSync(join(home, 'config'), 'utf8')).acceptFrom).toEqual([A])
    expect(resolveAgentConfig({}, env).policy.acceptFrom).toEqual([A])
    expect(() => savePolicyPatch(home, { acceptFrom: ['lab-ws2'] })).toThrow(/peer id/)
  })
})

describe('vgrid agent set', () => {
  it('turns the flags into a patch with only what was given', () => {
    expect(policyPatch({})).toEqual({})
    expect(policyPatch({ cpus: '2', gpus: '1,0', mem: '8G', maxTasks: '3', nice: '12', onlyWhenIdle: false }))
      .toEqual({ cpus: 2, gpus: [0, 1], memBytes: 8 * 2 ** 30, maxTasks: 3, nice: 12, onlyWhenIdle: false })
    expect(policyPatch({ cpus: 'all', mem: 'all', maxTasks: 'unlimited', gpus: 'none' }))
      .toEqual({ cpus: 'all', memBytes: 'all', maxTasks: 'unlimited', gpus: 'none' })
    expect(badArg(() => policyPatch({ nice: '99' })).message).toMatch(/^--nice/)
  })

  it('checks a patch from the control socket as strictly, unknown settings included', () => {
    expect(parseControlRequest({ t: 'agent-set', patch: { nice: 3, maxTasks: 'unlimited' } })).toEqual({ t: 'agent-set', patch: { nice: 3, maxTasks: 'unlimited' } })
    expect(badArg(() => checkPolicyPatch({ nice: 40 })).message).toMatch(/vgrid agent set: nice/)
    expect(badArg(() => checkPolicyPatch({ pools: ['x'] })).message).toMatch(/unknown setting/)
    expect(() => parseControlRequest({ t: 'agent-set' })).toThrow(/patch is not a map/)
  })

  it('applies a patch without touching the rest', () => {
    const share = { cpus: 4, memBytes: 2 ** 30, pools: ['lab'], labels: { rack: 'b2' } }
    const policy: OwnerPolicy = { maxTasks: 2, nice: 10, onlyWhenIdle: false }
    const next = applyPolicyPatch(share, policy, { cpus: 'all', maxTasks: 'unlimited', onlyWhenIdle: true, gpus: [1] })
    expect(next.share).toEqual({ memBytes: 2 ** 30, gpus: [1], pools: ['lab'], labels: { rack: 'b2' } })
    expect(next.policy).toEqual({ nice: 10, onlyWhenIdle: true })
    expect(share.cpus).toBe(4)
    expect(policy.maxTasks).toBe(2)
  })

  it('saves the patch in the config file, keeping its other fields, so the next start has it', () => {
    const path = join(home, 'config')
    writeFileSync(path, JSON.stringify({ pools: ['lab'], nice: 5 }))
    expect(savePolicyPatch(home, { cpus: 2, memBytes: 3 * 2 ** 30, gpus: [0, 2], maxTasks: 4, onlyWhenIdle: true })).toBe(path)
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ pools: ['lab'], nice: 5, cpus: 2, mem: '3G', gpus: '0,2', maxTasks: 4, onlyWhenIdle: true })
    const c = resolveAgentConfig({}, env)
    expect(c.share).toMatchObject({ cpus: 2, memBytes: 3 * 2 ** 30, gpus: [0, 2], pools: ['lab'] })
    expect(c.policy).toEqual({ maxTasks: 4, nice: 5, onlyWhenIdle: true })

    savePolicyPatch(home, { cpus: 'all', memBytes: 1000, maxTasks: 'unlimited' } satisfies PolicyPatch)
    const again = resolveAgentConfig({}, env)
    expect(again.share.cpus).toBeUndefined()
    expect(again.share.memBytes).toBe(1000)
    expect(again.policy.maxTasks).toBeUndefined()
  })

  it('creates the file when there is none, and never overwrites one it cannot read', () => {
    savePolicyPatch(home, { nice: 7 })
    expect(JSON.parse(readFileSync(join(home, 'config'), 'utf8'))).toEqual({ nice: 7 })
    writeFileSync(join(home, 'config'), '{ not json')
    expect(badArg(() => savePolicyPatch(home, { nice: 8 })).message).toMatch(/is not valid JSON/)
    expect(readFileSync(join(home, 'config'), 'utf8')).toBe('{ not json')
  })
})
