import fs from 'node:fs'
import path from 'node:path'
import os from 'node:os'
import { afterEach, describe, expect, it } from 'vitest'
import { Session, isAlive, removeTempDirs, run, tempDir, waitFor } from '../helpers/exec-session.js'

afterEach(removeTempDirs)

describe('serveExec on pipes', () => {
  it('streams stdout, then one exit after it', async () => {
    const { s, r } = await run(['echo', 'hello', 'grid'])
    expect(s.stdout()).toBe('hello grid\n')
    expect(s.events[0]).toMatchObject({ t: 'started', peer: 'peer-test', host: 'host-test', gpus: [] })
    expect((s.events[0] as { pid: number }).pid).toBeGreaterThan(0)
    expect(s.events.at(-1)).toEqual({ t: 'exit', code: 0 })
    expect(s.events.filter((e) => e.t === 'exit')).toHaveLength(1)
    expect(r).toMatchObject({ exitCode: 0, started: true, cancelled: false })
    expect(r.signal).toBeUndefined()
  })

  it('keeps stderr apart from stdout', async () => {
    const { s } = await run(['sh', '-c', 'echo out; echo err >&2; echo out2'])
    expect(s.stdout()).toBe('out\nout2\n')
    expect(s.stderr()).toBe('err\n')
  })

  it('forwards stdin up to EOF', async () => {
    expect((await run(['cat'], { stdin: 'line one\nline two\n' })).s.stdout()).toBe('line one\nline two\n')
    expect((await run(['wc', '-c'], { stdin: 'x'.repeat(12345) })).s.stdout().trim()).toBe('12345')
    expect((await run(['wc', '-c'], { stdin: '' })).s.stdout().trim()).toBe('0')
  })

  it('reports exit codes 0 and 3', async () => {
    expect((await run(['true'])).r.exitCode).toBe(0)
    const { s, r } = await run(['sh', '-c', 'exit 3'])
    expect(r.exitCode).toBe(3)
    expect(s.exit()).toEqual({ t: 'exit', code: 3 })
  })

  it('reports death by signal as 128+N with the signal name', async () => {
    const { s, r } = await run(['sh', '-c', 'kill -KILL $$'])
    expect(r).toMatchObject({ exitCode: 128 + os.constants.signals.SIGKILL, signal: 'SIGKILL' })
    expect(s.exit()).toEqual({ t: 'exit', code: 137, signal: 'SIGKILL' })
  })

  it('forwards SIGINT to a command that traps it', async () => {
    const s = new Session(['sh', '-c', 'trap "echo got INT; exit 7" INT; echo ready; while :; do sleep 0.05; done'])
    await s.waitStdout(/ready/)
    await s.send({ t: 'signal', sig: 'SIGINT' })
    await s.ended
    expect(s.stdout()).toContain('got INT')
    expect((await s.result).exitCode).toBe(7)
  })

  it('signals the whole process group: a grandchild dies too', async () => {
    const s = new Session(['sh', '-c', 'sleep 100 & echo $!; wait'])
    const pid = Number((await s.waitStdout(/^(\d+)\n/))[1])
    expect(isAlive(pid)).toBe(true)
    await s.send({ t: 'signal', sig: 'SIGTERM' })
    await s.ended
    expect((await s.result).exitCode).toBe(143)
    await waitFor(() => !isAlive(pid), `grandchild ${pid} to die`)
  })

  it('ends what the command left running in its group when it exits', async () => {
    // The background sleep does not hold stdout, so the session would otherwise end and leave it.
    const s = new Session(['sh', '-c', 'sleep 100 >/dev/null 2>&1 & echo $!'])
    await s.ended
    const pid = Number(s.stdout().trim())
    expect((await s.result).exitCode).toBe(0)
    await waitFor(() => !isAlive(pid), `leftover ${pid} to be killed`)
  })

  it('answers like a shell when the command is not found or not executable', async () => {
    const missing = await run(['no-such-command-vgrid'])
    expect(missing.r).toMatchObject({ exitCode: 127, started: false })
    expect(missing.s.stderr()).toBe('vgrid: no-such-command-vgrid: command not found\n')
    expect(missing.s.events.map((e) => e.t)).toEqual(['started', 'out', 'exit'])
    expect(missing.s.exit()).toEqual({ t: 'exit', code: 127 })

    const dir = tempDir()
    fs.writeFileSync(path.join(dir, 'script.sh'), '#!/bin/sh\necho hi\n', { mode: 0o644 })
    const denied = await run(['./script.sh'], { opts: { cwd: dir } })
    expect(denied.r.exitCode).toBe(126)
    expect(denied.s.stderr()).toBe('vgrid: ./script.sh: Permission denied\n')

    fs.chmodSync(path.join(dir, 'script.sh'), 0o755)
    expect((await run(['./script.sh'], { opts: { cwd: dir } })).s.stdout()).toBe('hi\n')
    expect((await run(['./nothing-here'], { opts: { cwd: dir } })).s.stderr()).toBe('vgrid: ./nothing-here: No such file or directory\n')
  })

  it('refuses a missing working directory with ERR_SPAWN_FAILED', async () => {
    const cwd = path.join(tempDir(), 'gone')
    const { s, r } = await run(['true'], { opts: { cwd } })
    expect(s.events).toHaveLength(1)
    expect(s.events[0]).toMatchObject({ t: 'error', error: { code: 'ERR_SPAWN_FAILED' } })
    expect((s.events[0] as { error: { message: string } }).error.message).toContain(cwd)
    expect(r).toMatchObject({ started: false, exitCode: 255, error: { code: 'ERR_SPAWN_FAILED' } })
  })

  it('runs in the given directory with spec.env on top of the agent environment', async () => {
    const dir = tempDir()
    const { s } = await run(['sh', '-c', 'pwd; echo "$FOO $HOME_SEEN"'], {
      opts: { cwd: dir, env: { PATH: process.env.PATH ?? '', FOO: 'agent', HOME_SEEN: 'agent' } },
      spec: { env: { FOO: 'user' } }
    })
    expect(s.stdout()).toBe(`${fs.realpathSync(dir)}\nuser agent\n`)
  })

  it('takes a resize without a terminal as a no-op', async () => {
    const s = new Session(['cat'])
    await s.send({ t: 'resize', cols: 100, rows: 40 })
    await s.send({ t: 'stdin', data: Buffer.from('still here\n') })
    await s.send({ t: 'eof' })
    await s.ended
    expect(s.stdout()).toBe('still here\n')
    expect((await s.result).exitCode).toBe(0)
  })

  it('ends the session with ERR_BAD_MESSAGE on a malformed input, killing the command', async () => {
    const malformed = [
      'not a map', 42, null, [1, 2], {}, { t: 'bogus' }, { t: 'signal', sig: 'SIGSTOP' }, { t: 'signal' },
      { t: 'stdin', data: 'a string' }, { t: 'stdin', data: new Uint8Array(2 * 1024 * 1024) },
      { t: 'resize', cols: -1, rows: 10 }, { t: 'resize', cols: 1.5, rows: 10 }
    ]
    await Promise.all(malformed.map(async (bad) => {
      const s = new Session(['sh', '-c', 'echo ready; exec cat'])
      await s.waitStdout(/ready/)
      await s.send({ t: 'stdin', data: Buffer.from('before\n') })
      await s.waitStdout(/before/)
      await s.send(bad)
      const last = await s.ended
      expect(last).toMatchObject({ t: 'error', error: { code: 'ERR_BAD_MESSAGE' } })
      expect((last as { error: { message: string } }).error.message).toMatch(/^host-test refused an input and ended the command: malformed message/)
      expect(s.exit()).toBeUndefined()
      const r = await s.result
      expect(r).toMatchObject({ cancelled: true, exitCode: 143, error: { code: 'ERR_BAD_MESSAGE' } })
      expect(s.log.lines.some((l) => l.startsWith('warn refused an input'))).toBe(true)
    }))
  })

  it('ignores EPIPE when the command stops reading its stdin', async () => {
    const s = new Session(['head', '-c', '5'])
    const chunk = Buffer.alloc(256 * 1024, 'y')
    for (let i = 0; i < 40; i++) await s.send({ t: 'stdin', data: chunk })
    await s.send({ t: 'eof' })
    await s.ended
    expect(s.stdout()).toBe('yyyyy')
    expect((await s.result).exitCode).toBe(0)
  })
})

describe('a command\'s stdio are real pipes, as in a shell', () => {
  it('opens /dev/stdout, /dev/stderr and /dev/stdin by name', async () => {
    const { s, r } = await run(['sh', '-c', 'echo to-out > /dev/stdout; echo to-err > /dev/stderr; cat /dev/stdin | tee /dev/stderr'], { stdin: 'piped\n' })
    expect(r.exitCode).toBe(0)
    expect(s.stdout()).toBe('to-out\npiped\n')
    expect(s.stderr()).toBe('to-err\npiped\n')
  })

  it('shows each as a FIFO (what `test -p` and stat see), blocking as a shell leaves them', async () => {
    const { s } = await run(['sh', '-c', 'for fd in 0 1 2; do if [ -p /dev/fd/$fd ]; then echo "$fd pipe"; fi; done; cat /proc/self/fdinfo/1 | grep flags'])
    expect(s.stdout()).toMatch(/^0 pipe\n1 pipe\n2 pipe\n/)
    // O_NONBLOCK (04000 octal) is not set on the command's end: programs read and write as usual.
    const flags = parseInt(/flags:\s+(\d+)/.exec(s.stdout())![1]!, 8)
    expect(flags & 0o4000).toBe(0)
  })

  it('gives the writer SIGPIPE, not ECONNRESET, once its reader is gone', async () => {
    const s = new Session(['sh', '-c', 'echo ready; while :; do echo line; done'])
    await s.waitStdout(/ready/)
    await s.send({ t: 'close-out' })
    await s.ended
    expect(await s.result).toMatchObject({ exitCode: 141, signal: 'SIGPIPE' })
  })

  it('lets a command open /dev/stdin after its input ended: it reads EOF, as on a pipe', async () => {
    // the first cat returns once our end is closed; a FIFO's open would then wait for a writer
    const { s, r } = await run(['sh', '-c', 'cat > /dev/null; cat /dev/stdin; echo reopened'], { stdin: 'some input\n' })
    expect(s.stdout()).toBe('reopened\n')
    expect(r.exitCode).toBe(0)
  })

  it('lets a command open /dev/stdout after its reader left, and its output goes nowhere', async () => {
    const s = new Session(['sh', '-c', 'echo ready; read go; echo late > /dev/stdout; echo survived >&2'])
    await s.waitStdout(/ready/)
    await s.send({ t: 'close-out' })
    await s.send({ t: 'stdin', data: Buffer.from('go\n') })
    // The open returns (it would wait for a reader for ever on a bare FIFO). The write then
    // gets SIGPIPE, as on a pipe; or, when it falls in the microseconds our nudge holds a
    // reader open, lands in a buffer nobody reads: output lost either way, as the reader left.
    await s.ended
    const r = await s.result
    if (r.exitCode === 141) expect(r.signal).toBe('SIGPIPE')
    else expect([r.exitCode, s.stderr()]).toEqual([0, 'survived\n'])
    expect(s.stdout()).toBe('ready\n')
  })
})

describe('serveExec cancellation', () => {
  it('kills the process group when the channel is destroyed mid-run', async () => {
    const s = new Session(['sh', '-c', 'sleep 100 & echo $!; wait'], { opts: { killGraceMs: 2000 } })
    const grandchild = Number((await s.waitStdout(/^(\d+)\n/))[1])
    const leader = s.started()?.pid ?? 0
    s.client.destroy(new Error('submitter crashed'))
    const r = await s.result
    expect(r).toMatchObject({ cancelled: true, exitCode: 143, signal: 'SIGTERM' })
    expect(isAlive(leader)).toBe(false)
    await waitFor(() => !isAlive(grandchild), 'the grandchild to die')
  })

  it('cancels when the submitter closes before the exit, with SIGKILL after the grace time', async () => {
    const s = new Session(['sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 0.05; done'], { opts: { killGraceMs: 300 } })
    await s.waitStdout(/ready/)
    const t0 = Date.now()
    await s.client.close()
    const r = await s.result
    expect(r).toMatchObject({ cancelled: true, exitCode: 137, signal: 'SIGKILL' })
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
  })

  it('kills the command when the agent stops (AbortSignal)', async () => {
    const ac = new AbortController()
    const s = new Session(['sleep', '100'], { opts: { signal: ac.signal } })
    await waitFor(() => s.started(), 'started')
    ac.abort()
    await s.ended
    expect(s.exit()).toEqual({ t: 'exit', code: 143, signal: 'SIGTERM' })
    expect(await s.result).toMatchObject({ cancelled: true, started: true })
  })

  it('does not start anything when the agent is already stopping', async () => {
    const ac = new AbortController()
    ac.abort()
    const { s, r } = await run(['true'], { opts: { signal: ac.signal } })
    expect(s.events).toEqual([expect.objectContaining({ t: 'error', error: expect.objectContaining({ code: 'ERR_SPAWN_FAILED' }) })])
    expect(r).toMatchObject({ started: false, cancelled: true })
  })
})

describe('GPU visibility', () => {
  const gpu = (index: number, vendor = 'NVIDIA'): { index: number, vendor: string, model: string, memoryBytes: number } =>
    ({ index, vendor, model: vendor === 'NVIDIA' ? 'NVIDIA A100-SXM4-80GB' : 'AMD Instinct MI250X', memoryBytes: 80 * 2 ** 30 })
  const envOf = async (opts: object, specEnv: Record<string, string> = {}): Promise<Record<string, string>> => {
    const { s } = await run(['env'], { opts, spec: { env: specEnv } })
    return Object.fromEntries(s.stdout().split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
  }

  it('sets CUDA_VISIBLE_DEVICES from the assigned GPUs, over what the user passed', async () => {
    const env = await envOf({ gpus: [gpu(1), gpu(3)], machineHasGpus: true }, { CUDA_VISIBLE_DEVICES: '0,1,2,3' })
    expect(env.CUDA_VISIBLE_DEVICES).toBe('1,3')
    expect(env.NVIDIA_VISIBLE_DEVICES).toBe('1,3')
    expect(env.CUDA_DEVICE_ORDER).toBe('PCI_BUS_ID')
    expect(env.ROCR_VISIBLE_DEVICES).toBe('')
  })

  it('hides every GPU from a command given none on a GPU machine', async () => {
    const env = await envOf({ gpus: [], machineHasGpus: true })
    expect(env.CUDA_VISIBLE_DEVICES).toBe('')
    expect(env.HIP_VISIBLE_DEVICES).toBe('')
  })

  it('uses the ROCm variables for AMD GPUs and sets nothing on a machine without GPUs', async () => {
    const amd = await envOf({ gpus: [gpu(0, 'AMD')], machineHasGpus: true })
    expect(amd.ROCR_VISIBLE_DEVICES).toBe('0')
    expect(amd.HIP_VISIBLE_DEVICES).toBe('0')
    expect(amd.CUDA_VISIBLE_DEVICES).toBe('')
    const none = await envOf({ gpus: [], machineHasGpus: false })
    expect(none.CUDA_VISIBLE_DEVICES).toBeUndefined()
  })

  it('reports the assigned indexes in started', async () => {
    const { s } = await run(['true'], { opts: { gpus: [gpu(2), gpu(5)], machineHasGpus: true } })
    expect(s.started()?.gpus).toEqual([2, 5])
  })
})
