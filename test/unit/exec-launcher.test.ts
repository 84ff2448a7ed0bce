/**
 * Commands started by the small helper process instead of the agent (exec/launcher.ts): what
 * Node's spawn did must hold (argv[0], environment, directory, a session of its own, errno on
 * failure, exit codes and signals), under many starts and ends at once, and when the helper
 * itself dies.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Launcher, defaultLauncher } from '../../src/exec/launcher.js'
import { allowedCores } from '../../src/agent/guest-run.js'
import { isAlive, removeTempDirs, run, tempDir, waitFor } from '../helpers/exec-session.js'

afterEach(removeTempDirs)

const NULLS: [string, string, string] = ['/dev/null', '/dev/null', '/dev/null']
const PERL = '/usr/bin/perl'

function sessionOf (pid: number): number {
  // field 6 of /proc/PID/stat, after the command name in parentheses
  return Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[3])
}

describe('the launcher', () => {
  it('starts the file with the argv[0], environment and directory given, in a session of its own', async () => {
    const l = new Launcher(PERL)
    const dir = tempDir()
    const out = path.join(dir, 'out')
    const started = await l.launch({
      file: '/bin/sh',
      argv: ['my-name', '-c', `echo "$0|$FOO|$PWD|$HOME" > ${out}; sleep 0.2`],
      cwd: dir,
      env: { FOO: 'a value\nwith a newline', PATH: '/usr/bin:/bin' },
      stdio: NULLS
    })
    expect(sessionOf(started.pid)).toBe(started.pid)
    expect(await started.status).toEqual({ code: 0, signal: null })
    // only what was given: HOME was not
    expect(fs.readFileSync(out, 'utf8')).toBe(`my-name|a value\nwith a newline|${dir}|\n`)
  })

  it('reports exit codes and the signal that killed a command', async () => {
    const l = new Launcher(PERL)
    const three = await l.launch({ file: '/bin/sh', argv: ['sh', '-c', 'exit 3'], cwd: '/', env: {}, stdio: NULLS })
    expect(await three.status).toEqual({ code: 3, signal: null })
    const killed = await l.launch({ file: '/bin/sh', argv: ['sh', '-c', 'kill -TERM $$'], cwd: '/', env: {}, stdio: NULLS })
    expect(await killed.status).toEqual({ code: null, signal: 'SIGTERM' })
  })

  it('fails as spawn() would when the file cannot be run or the directory is missing', async () => {
    const l = new Launcher(PERL)
    const dir = tempDir()
    const plain = path.join(dir, 'not-executable')
    fs.writeFileSync(plain, 'echo hi\n', { mode: 0o644 })
    await expect(l.launch({ file: path.join(dir, 'missing'), argv: ['x'], cwd: dir, env: {}, stdio: NULLS })).rejects.toMatchObject({ code: 'ENOENT' })
    await expect(l.launch({ file: plain, argv: ['x'], cwd: dir, env: {}, stdio: NULLS })).rejects.toMatchObject({ code: 'EACCES' })
    await expect(l.launch({ file: '/bin/true', argv: ['true'], cwd: path.join(dir, 'gone'), env: {}, stdio: NULLS })).rejects.toMatchObject({ code: 'ENOENT' })
    // and it goes on starting commands
    expect(await (await l.launch({ file: '/bin/true', argv: ['true'], cwd: dir, env: {}, stdio: NULLS })).status).toEqual({ code: 0, signal: null })
  })

  it('never waits on a FIFO whose other end is gone: the start fails instead', async () => {
    const l = new Launcher(PERL)
    const fifo = path.join(tempDir(), 'out')
    execFileSync('mkfifo', [fifo])
    await expect(l.launch({ file: '/bin/true', argv: ['true'], cwd: '/', env: {}, stdio: ['/dev/null', fifo, '/dev/null'] })).rejects.toMatchObject({ code: 'ENXIO' })
    // a stdin with no writer reads as ended
    const reader = await l.launch({ file: '/bin/sh', argv: ['sh', '-c', 'read x; exit $?'], cwd: '/', env: {}, stdio: [fifo, '/dev/null', '/dev/null'] })
    expect(await reader.status).toEqual({ code: 1, signal: null })
  })

  it('starts a command at the niceness and on the cores asked, before its first instruction', async () => {
    const l = new Launcher(PERL)
    expect(l.canPin).toBe(true) // x64 and arm64 Linux, where the tests run
    const dir = tempDir()
    const out = path.join(dir, 'out')
    const cores = allowedCores()
    const last = cores[cores.length - 1]!
    // what the command itself sees first: its niceness (field 19 of its stat) and its cores
    const c = await l.launch({
      file: '/bin/sh', argv: ['sh', '-c', `cut -d" " -f19 /proc/$$/stat > ${out}; grep Cpus_allowed_list /proc/$$/status >> ${out}`],
      cwd: '/', env: {}, stdio: NULLS, nice: 7, cores: [last]
    })
    expect(await c.status).toEqual({ code: 0, signal: null })
    expect(fs.readFileSync(out, 'utf8').split('\n')).toEqual(['7', `Cpus_allowed_list:\t${last}`, ''])
    // several cores, past the first byte of the mask when the machine has them
    const all = await l.launch({ file: '/bin/sh', argv: ['sh', '-c', `grep Cpus_allowed_list /proc/$$/status > ${out}`], cwd: '/', env: {}, stdio: NULLS, cores })
    expect(await all.status).toEqual({ code: 0, signal: null })
    expect(fs.readFileSync(out, 'utf8')).toBe(`Cpus_allowed_list:\t${fs.readFileSync('/proc/self/status', 'utf8').match(/Cpus_allowed_list:\s*(.+)/)![1]}\n`)
  })

  it('fails a start whose cores the machine does not have, as taskset would, and refuses values that are not whole numbers', async () => {
    const l = new Launcher(PERL)
    await expect(l.launch({ file: '/bin/true', argv: ['true'], cwd: '/', env: {}, stdio: NULLS, cores: [4000] })).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(l.launch({ file: '/bin/true', argv: ['true'], cwd: '/', env: {}, stdio: NULLS, nice: -1 })).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(l.launch({ file: '/bin/true', argv: ['true'], cwd: '/', env: {}, stdio: NULLS, cores: [0.5] })).rejects.toMatchObject({ code: 'EINVAL' })
    expect(await (await l.launch({ file: '/bin/true', argv: ['true'], cwd: '/', env: {}, stdio: NULLS, cores: [0] })).status).toEqual({ code: 0, signal: null })
  })

  it('hears every end while it starts others: 300 commands, 30 at a time', async () => {
    // Ends interrupt the helper while it waits for the next start's exec; each must still be told once.
    const l = new Launcher(PERL)
    const codes: number[] = []
    let next = 0
    await Promise.all(Array.from({ length: 30 }, async () => {
      while (next < 300) {
        const n = next++
        const c = await l.launch({ file: '/bin/sh', argv: ['sh', '-c', `exit ${n % 200}`], cwd: '/', env: {}, stdio: NULLS })
        codes[n] = (await c.status).code!
      }
    }))
    expect(codes).toEqual(Array.from({ length: 300 }, (_, n) => n % 200))
  })

  it('runs serveExec\'s commands on real pipes through the helper, many at once', { timeout: 20_000 }, async () => {
    expect(defaultLauncher()).toBeDefined()
    const runs = await Promise.all(Array.from({ length: 40 }, async (_, i) => await run(['sh', '-c', `echo out ${i}; echo err ${i} >&2; exit ${i % 5}`])))
    runs.forEach(({ s, r }, i) => {
      expect(s.stdout()).toBe(`out ${i}\n`)
      expect(s.stderr()).toBe(`err ${i}\n`)
      expect(r.exitCode).toBe(i % 5)
    })
  })

  it('makes FIFOs of mode 0666 whatever the umask, and says what stopped it', async () => {
    const l = new Launcher(PERL)
    const dir = tempDir()
    const names = ['a', 'b', 'c'].map((n) => path.join(dir, n))
    const umask = process.umask(0o077)
    try {
      await l.makeFifos(names)
    } finally {
      process.umask(umask)
    }
    for (const n of names) {
      const st = fs.statSync(n)
      expect(st.isFIFO()).toBe(true)
      expect(st.mode & 0o777).toBe(0o666)
    }
    await expect(l.makeFifos([path.join(dir, 'd'), names[0]!])).rejects.toMatchObject({ code: 'EEXIST' })
    await expect(l.makeFifos([path.join(dir, 'no/such/dir')])).rejects.toMatchObject({ code: 'ENOENT' })
    // it still starts commands after
    const r = await l.launch({ file: '/bin/true', argv: ['true'], cwd: '/', env: {}, stdio: NULLS })
    expect(await r.status).toEqual({ code: 0, signal: null })
    process.kill(l.pid!, 'SIGKILL')
  })

  it('kills what it started when it dies, says so, and takes no more requests', async () => {
    const l = new Launcher(PERL)
    const sleeper = await l.launch({ file: '/bin/sleep', argv: ['sleep', '100'], cwd: '/', env: {}, stdio: NULLS })
    expect(isAlive(sleeper.pid)).toBe(true)
    process.kill(l.pid!, 'SIGKILL')
    expect(await sleeper.status).toEqual({ code: null, signal: 'SIGKILL' })
    await waitFor(() => !isAlive(sleeper.pid), 'the command to be gone', 10_000)
    expect(l.alive).toBe(false)
    await expect(l.launch({ file: '/bin/true', argv: ['true'], cwd: '/', env: {}, stdio: NULLS })).rejects.toThrow(/gone/)
  })
})
