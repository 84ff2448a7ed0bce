/** A waiting command and its agent's restart (cli/agent-back.ts). */
import { describe, it, expect } from 'vitest'
import { VgridError } from '../../src/common/errors.js'
import { untilAgentBack } from '../../src/cli/agent-back.js'
import { lostAgent } from '../../src/agent/control/client.js'

const noAgent = (): VgridError => new VgridError('ERR_NO_AGENT', 'no vgrid agent is running')

describe('untilAgentBack', () => {
  it('says once that the agent went, knocks while nobody listens, and goes on once it answers', async () => {
    const answers: Array<() => unknown> = [() => { throw lostAgent() }, () => { throw noAgent() }, () => { throw noAgent() }, () => 'done']
    let gone = 0
    const r = await untilAgentBack(async () => answers.shift()!(), { onGone: () => { gone++ }, pollMs: 1 })
    expect(r).toBe('done')
    expect(gone).toBe(1)
    expect(answers).toHaveLength(0)
  })

  it('fails at once when there was no agent to begin with, or on any other error', async () => {
    await expect(untilAgentBack(async () => { throw noAgent() }, { onGone: () => {}, pollMs: 1 })).rejects.toThrow(/no vgrid agent/)
    await expect(untilAgentBack(async () => { throw new VgridError('ERR_BAD_ARGUMENT', 'no task x') }, { onGone: () => {}, pollMs: 1 })).rejects.toThrow(/no task x/)
  })

  it('gives up when the agent stays away past its wait', async () => {
    let n = 0
    await expect(untilAgentBack(async () => { n++; throw n === 1 ? lostAgent() : noAgent() }, { onGone: () => {}, pollMs: 5, waitMs: 30 })).rejects.toThrow(/no vgrid agent/)
    expect(n).toBeGreaterThan(2)
  })
})
