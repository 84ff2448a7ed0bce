/** Guests stopped because the owner came back end as lost, not with a killed process's status. */
import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { memoryChannelPair } from '../../src/common/channel.js'
import { GuestCommands } from '../../src/agent/guests.js'
import { isAlive } from '../helpers/exec-session.js'

async function sleeper (): Promise<number> {
  const child = spawn('sh', ['-c', 'sleep 30 & wait'], { detached: true, stdio: 'ignore' })
  return await new Promise<number>((resolve) => { child.once('spawn', () => { resolve(child.pid!) }) })
}

describe('GuestCommands', () => {
  it('stops every running group and turns the exits of their sessions into ERR_PEER_LOST', async () => {
    const guests = new GuestCommands()
    const groups = guests.groups()
    const [pid, other] = [await sleeper(), await sleeper()]
    groups.add(pid)
    groups.add(other)
    expect(guests.pgids().sort()).toEqual([pid, other].sort())

    const [near, far] = memoryChannelPair()
    const session = guests.watch(near)
    await session.send({ t: 'started', pid })
    // a CLI's run placed on another member: its `started` names a process there
    const [cliNear, cliFar] = memoryChannelPair()
    const remote = guests.watch(cliNear, true)
    await remote.send({ t: 'placed', peer: 'p', host: 'h', local: false })
    await remote.send({ t: 'started', pid: other })

    expect(await guests.stopAll('the owner came back', 'retry elsewhere', 1_000)).toBe(2)
    expect(isAlive(pid)).toBe(false)
    expect(isAlive(other)).toBe(false)
    groups.remove(pid)
    groups.remove(other)
    expect(guests.pgids()).toEqual([])

    await session.send({ t: 'exit', code: 143, signal: 'SIGTERM' })
    expect(await far.recv()).toEqual({ t: 'started', pid })
    expect(await far.recv()).toEqual({ t: 'error', error: { code: 'ERR_PEER_LOST', message: 'the owner came back', hint: 'retry elsewhere' } })
    await remote.send({ t: 'exit', code: 143, signal: 'SIGTERM' })
    await cliFar.recv(); await cliFar.recv()
    expect(await cliFar.recv()).toEqual({ t: 'exit', code: 143, signal: 'SIGTERM' })
  })

  it('leaves alone a session whose command had already ended', async () => {
    const guests = new GuestCommands()
    const groups = guests.groups()
    const [near, far] = memoryChannelPair()
    const session = guests.watch(near)
    await session.send({ t: 'started', pid: 999_999 })
    groups.add(999_999)
    groups.remove(999_999) // it ended; its outputs are still on the way
    expect(await guests.stopAll('x', 'y', 100)).toBe(0)
    await session.send({ t: 'exit', code: 0 })
    await far.recv()
    expect(await far.recv()).toEqual({ t: 'exit', code: 0 })
  })
})
