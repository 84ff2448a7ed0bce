/** Guests run below the owner: `nice -n N -- FILE ARGS`, the pid kept, everything started inheriting it. */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { niced, setDefaultNiceness, defaultNicenessValue } from '../../src/exec/niceness.js'
import { removeTempDirs, run, Session } from '../helpers/exec-session.js'
import { waitFor } from '../helpers/wait.js'

/** Field 19 of /proc/PID/stat. */
function niceOf (pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])
}

describe('niced', () => {
  it('starts the command through nice, or as it is at 0', () => {
    expect(niced('/bin/sh', ['sh', '-c', 'x'], 0)).toMatchObject({ file: '/bin/sh', argv: ['sh', '-c', 'x'] })
    const n = niced('/bin/sh', ['sh', '-c', 'x'], 10)
    expect(n.file).toMatch(/\/nice$/)
    expect(n.argv).toEqual(['nice', '-n', '10', '--', '/bin/sh', '-c', 'x'])
    expect(() => niced('/bin/sh', ['sh'], 20)).toThrow(RangeError)
    expect(() => { setDefaultNiceness(-1) }).toThrow(RangeError)
  })

  it('keeps the pid: the process spawned becomes the command, at the niceness asked', async () => {
    const n = niced('/bin/sleep', ['sleep', '30'], 7)
    const child = spawn(n.file, n.argv.slice(1), { argv0: n.argv[0], stdio: 'ignore', detached: true })
    try {
      const pid = await new Promise<number>((resolve) => { child.once('spawn', () => { resolve(child.pid!) }) })
      await waitFor(() => fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep', 'nice to exec sleep')
      expect(niceOf(pid)).toBe(7)
    } finally {
      child.kill('SIGKILL')
    }
  })
})

describe('serveExec at a niceness', () => {
  afterEach(() => { removeTempDirs() })

  it.each([
    ['pipes', undefined],
    ['a terminal', { cols: 80, rows: 24, term: 'xterm' }]
  ])('under %s, the command and its children run at it, and signals still reach the group', async (_name, tty) => {
    // the command and a child it starts print their niceness, then it waits to be interrupted
    const argv = ['sh', '-c', 'cut -d" " -f19 /proc/$$/stat; sh -c \'cut -d" " -f19 /proc/$$/stat\'; echo ready; sleep 30']
    const s = new Session(argv, { spec: tty === undefined ? {} : { tty }, opts: { nice: 12 } })
    await s.waitStdout(/ready/)
    expect(s.stdout().replace(/\r/g, '').split('\n').slice(0, 2)).toEqual(['12', '12'])
    expect(niceOf(s.started()!.pid)).toBe(12)
    await s.send({ t: 'signal', sig: 'SIGINT' })
    const end = await s.ended
    expect(end?.t).toBe('exit')
    expect((await s.result).exitCode).toBe(130)
  })

  it('takes the agent\'s default when not told', async () => {
    const before = defaultNicenessValue()
    setDefaultNiceness(5)
    try {
      const { s } = await run(['sh', '-c', 'cut -d" " -f19 /proc/$$/stat'])
      expect(s.stdout()).toBe('5\n')
    } finally {
      setDefaultNiceness(before)
    }
    const { s } = await run(['sh', '-c', 'cut -d" " -f19 /proc/$$/stat'], { opts: { nice: 0 } })
    expect(s.stdout()).toBe('0\n')
  })
})
