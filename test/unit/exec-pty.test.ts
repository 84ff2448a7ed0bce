import { setTimeout as delay } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { Session, isAlive, removeTempDirs, waitFor } from '../helpers/exec-session.js'

afterEach(removeTempDirs)

const tty = { cols: 100, rows: 30, term: 'xterm-256color' }
const withTty = { spec: { tty } }

describe('serveExec under a pseudo-terminal', () => {
  it('gives the command a real terminal of the requested size and type', async () => {
    const s = new Session(['sh', '-c', 'tty; stty size; echo "$TERM"'], withTty)
    await s.ended
    expect(s.stdout()).toMatch(/^\/dev\/pts\/\d+\r\n30 100\r\nxterm-256color\r\n$/)
    expect(s.bytes(2).byteLength).toBe(0)
    expect(await s.result).toMatchObject({ exitCode: 0, started: true })
  })

  it('applies a resize the command then sees', async () => {
    const s = new Session(['sh', '-c', 'stty size; read line; stty size'], withTty)
    await s.waitStdout(/30 100\r\n/)
    await s.send({ t: 'resize', cols: 132, rows: 43 })
    await s.send({ t: 'stdin', data: Buffer.from('go\r') })
    await s.waitStdout(/43 132\r\n/)
    await s.ended
  })

  it('forwards stdin, and eof as ^D', async () => {
    const s = new Session(['cat'], withTty)
    await s.send({ t: 'stdin', data: Buffer.from('abc\r') })
    await s.waitStdout(/abc\r\nabc\r\n/) // the terminal's echo, then cat's copy
    await s.send({ t: 'eof' })
    await s.ended
    // cat ends at the ^D. Known race, reproduced with node-pty alone (a few runs in 40 on a
    // loaded machine): the terminal is hung up as cat exits and it is reported killed by
    // SIGHUP. Either way it ended because of the ^D, not a timeout or a kill of ours.
    const r = await s.result
    expect(r.cancelled).toBe(false)
    expect(r.exitCode === 0 || r.signal === 'SIGHUP', JSON.stringify(r)).toBe(true)
  })

  it('reports exit codes and signals as a shell does', async () => {
    const three = new Session(['sh', '-c', 'exit 3'], withTty)
    await three.ended
    expect(three.exit()).toEqual({ t: 'exit', code: 3 })
    const killed = new Session(['sh', '-c', 'kill -TERM $$'], withTty)
    await killed.ended
    expect(killed.exit()).toEqual({ t: 'exit', code: 143, signal: 'SIGTERM' })
  })

  it('sends a forwarded signal to the foreground process group', async () => {
    const s = new Session(['sh', '-c', 'trap "echo got INT; exit 7" INT; echo ready; while :; do sleep 0.05; done'], withTty)
    await s.waitStdout(/ready/)
    await s.send({ t: 'signal', sig: 'SIGINT' })
    await s.ended
    expect(s.stdout()).toContain('got INT')
    expect((await s.result).exitCode).toBe(7)
  })

  it('answers 127 for a command that is not found, without forking a terminal', async () => {
    const s = new Session(['no-such-command-vgrid'], withTty)
    await s.ended
    // \r\n as a terminal's output has it: the user's terminal is raw
    expect(s.stderr()).toBe('vgrid: no-such-command-vgrid: command not found\r\n')
    expect(await s.result).toMatchObject({ exitCode: 127, started: false })
  })

  // libuv takes POLLHUP after a short read for end-of-file and would drop the last KiB.
  it('delivers the whole output when the command exits right after writing', async () => {
    const expected = Array.from({ length: 100_000 }, (_, i) => `${i + 1}\r\n`).join('')
    for (let i = 0; i < 5; i++) {
      const s = new Session(['sh', '-c', 'seq 1 100000; true'], withTty)
      await s.ended
      expect(s.stdout().length).toBe(expected.length)
      expect(s.stdout() === expected).toBe(true)
    }
  })

  // node-pty destroys its stream 200 ms after the process exits; a paused stream would lose its tail.
  it('delivers the whole output to a reader that is slower than the command', async () => {
    const expected = Array.from({ length: 3_000 }, (_, i) => `${i + 1}\r\n`).join('')
    const s = new Session(['sh', '-c', 'seq 1 3000; true'], { ...withTty, autoRead: false, highWater: 2 })
    const started = await s.next()
    const pid = (started as { pid: number }).pid
    // generous: a loaded machine (the whole suite runs in parallel) can take seconds here
    await waitFor(() => !isAlive(pid), 'the command to exit', 20_000)
    await delay(400) // the reader is away for longer than node-pty's 200 ms
    for (;;) {
      const ev = await s.next()
      if (ev === undefined || ev.t === 'exit') break
    }
    expect(s.stdout().length).toBe(expected.length)
    expect(s.stdout() === expected).toBe(true)
  })

  it('hangs up the terminal when the submitter goes away', async () => {
    const s = new Session(['sh', '-c', 'sleep 100 & echo $!; wait'], { ...withTty, opts: { killGraceMs: 2000 } })
    const grandchild = Number((await s.waitStdout(/(\d+)\r\n/))[1])
    s.client.destroy()
    const r = await s.result
    expect(r).toMatchObject({ cancelled: true, exitCode: 129, signal: 'SIGHUP' })
    await waitFor(() => !isAlive(grandchild), 'the grandchild to die')
  })
})
