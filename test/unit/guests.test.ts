/** Guests stopped because the owner came back end as lost, not with a killed process's status. */
import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { memoryChannelPair } from '../../src/common/channel.js'
import { GuestCommands } from '../../src/agent/guests.js'
import { isAlive } from '../helpers/exec-session.js'
import type { ExecEvent } from '../../src/protocol/session.js'

async function sleeper (): Promise<number> {
  const child = spawn('sh', ['-c', 'sleep 30 & wait'], { detached: true, stdio: 'ignore' })
  return await new Promise<number>((resolve) => { child.once('spawn', () => { resolve(child.pid!) }) })
}

function started (pid: number): ExecEvent {
  return { t: 'started', pid, peer: '12D3KooWPeer', host: 'h', gpus: [] }
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
    await session.send(started(pid))
    // a group not watched (no session says it started): stopped all the same

    expect(await guests.stopAll('the owner came back', 'retry elsewhere', 1_000)).toBe(2)
    expect(isAlive(pid)).toBe(false)
    expect(isAlive(other)).toBe(false)
    groups.remove(pid)
    groups.remove(other)
    expect(guests.pgids()).toEqual([])

    await session.send({ t: 'exit', code: 143, signal: 'SIGTERM' })
    expect(await far.recv()).toEqual(started(pid))
    expect(await far.recv()).toEqual({ t: 'error', error: { code: 'ERR_PEER_LOST', message: 'the owner came back', hint: 'retry elsewhere' } })
  })

  it('leaves alone a session whose command had already ended', async () => {
    const guests = new GuestCommands()
    const groups = guests.groups()
    const [near, far] = memoryChannelPair()
    const session = guests.watch(near)
    await session.send(started(999_999))
    groups.add(999_999)
    groups.remove(999_999) // it ended; its outputs are still on the way
    expect(await guests.stopAll('x', 'y', 100)).toBe(0)
    await session.send({ t: 'exit', code: 0 })
    await far.recv()
    expect(await far.recv()).toEqual({ t: 'exit', code: 0 })
  })
})
