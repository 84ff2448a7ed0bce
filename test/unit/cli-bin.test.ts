/**
 * The built binaries as a user runs them: help, usage errors, no agent, and a run against a
 * scripted fake agent (flushing before exit, stdin from a pipe, signals, a closed stdout).
 * They run from dist/: it is built first when missing or older than the CLI's sources.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { socketChannel, type FrameChannel } from '../../src/common/channel.js'
import { CONTROL_VERSION } from '../../src/protocol/control.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const SOURCES = ['src/cli', 'src/agent/control', 'src/common']

/** Builds dist/ when a source of the CLI is newer than its output (tsc emits despite type errors elsewhere). */
function ensureBuilt (): void {
  const stale = SOURCES.some((dir) => fs.readdirSync(path.join(ROOT, dir)).filter((f) => f.endsWith('.ts')).some((f) => {
    const out = path.join(ROOT, 'dist', dir, f.replace(/\.ts$/, '.js'))
    return !fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(path.join(ROOT, dir, f)).mtimeMs
  }))
  if (!stale) return
  console.log('cli-bin: dist/ is missing or older than src/cli; building it with tsc')
  try {
    execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', ROOT], { stdio: 'pipe' })
  } catch (err) {
    // Type errors in modules being written elsewhere do not stop tsc from emitting ours.
    if (!fs.existsSync(path.join(ROOT, 'dist/src/cli/vrun.js'))) throw err
  }
}

interface Result { code: number | null, stdout: string, stderr: string }

function runBin (bin: 'vgrid' | 'vrun' | 'vbatch', args: string[], home: string, input = ''): Promise<Result> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', `${bin}.js`), ...args], { env: { ...process.env, VGRID_HOME: home } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  child.stdin.on('error', () => {})
  child.stdin.end(input)
  return new Promise((resolve) => { child.on('close', (code) => { resolve({ code, stdout, stderr }) }) })
}

let home: string
beforeAll(() => {
  ensureBuilt()
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-bin-'))
}, 120_000)
afterAll(() => { fs.rmSync(home, { recursive: true, force: true }) })

describe('the built binaries without an agent', () => {
  it('vgrid --help explains the commands and exits 0', async () => {
    const r = await runBin('vgrid', ['--help'], home)
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('$ vgrid <command> [options]')
    expect(r.stdout).toContain('join-token')
    expect(r.stderr).toBe('')
  })

  it('vrun with no agent exits 255 with the message and the hint', async () => {
    const r = await runBin('vrun', ['true'], home)
    expect(r.code).toBe(255)
    expect(r.stdout).toBe('')
    expect(r.stderr).toBe(`vrun: no vgrid agent is running (looked for ${path.join(home, 'agent.sock')})\n` +
      'hint: start one with `vgrid agent` (first machine of a grid) or `vgrid agent --join TOKEN`; set VGRID_HOME if your agent uses another home\n')
  })

  it('vgrid peers with no agent exits 255 with the same message', async () => {
    const r = await runBin('vgrid', ['peers'], home)
    expect(r.code).toBe(255)
    expect(r.stderr).toContain('vgrid: no vgrid agent is running')
  })

  it('usage errors exit 2 with usage on stderr', async () => {
    const none = await runBin('vrun', [], home)
    expect(none.code).toBe(2)
    expect(none.stderr).toMatch(/^vrun: no command given\n\nvrun\/[\d.]+\n\nUsage:\n {2}\$ vrun \[options\] CMD \[ARGS\.\.\.\]/)
    const bad = await runBin('vgrid', ['peers', '--bogus'], home)
    expect(bad).toEqual({ code: 2, stdout: '', stderr: 'vgrid: unknown option --bogus\nusage: vgrid peers [options]; see vgrid peers --help\n' })
    const agent = await runBin('vgrid', ['agent', '--mem', 'lots'], home)
    expect(agent.code).toBe(2)
    expect(agent.stderr).toMatch(/^vgrid: --mem "lots" is not valid: .*\nusage: vgrid agent \[options\]/)
  })
})

describe('vbatch without an agent', () => {
  it('a bad command line exits 2 with the message and the usage line', async () => {
    const r = await runBin('vbatch', ['-N', '0', 'ls'], home)
    expect(r).toEqual({ code: 2, stdout: '', stderr: 'vbatch: -N 0: a batch needs at least one shard\nhint: leave -N out for a single task\nusage: vbatch [options] CMD [ARGS...]; see vbatch --help\n' })
  })

  it('no agent: exit 255; --help: exit 0 with the examples', async () => {
    const r = await runBin('vbatch', ['--no-sync', 'true'], home)
    expect(r.code).toBe(255)
    expect(r.stderr).toContain('vbatch: no vgrid agent is running')
    const help = await runBin('vbatch', ['--help'], home)
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('--after-success <NAME>')
    expect(help.stdout).toContain('xargs')
  })
})

describe('vrun against a fake agent', () => {
  let agentHome: string
  let server: net.Server
  /** What each test's fake agent does with the run request. */
  let script: (ch: FrameChannel, req: Record<string, unknown>) => Promise<void>

  beforeAll(async () => {
    agentHome = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-bin-agent-'))
    server = net.createServer((socket) => {
      const ch = socketChannel(socket)
      void (async () => {
        await ch.recv()
        await ch.send({ t: 'hello', v: CONTROL_VERSION, peer: '12D3KooWFake' })
        const req = await ch.recv() as Record<string, unknown>
        await script(ch, req)
      })().catch(() => { ch.destroy() })
    })
    await new Promise<void>((resolve) => { server.listen(path.join(agentHome, 'agent.sock'), resolve) })
  })
  afterAll(async () => {
    server.close()
    fs.rmSync(agentHome, { recursive: true, force: true })
  })

  const started = { t: 'started', pid: 1, peer: '12D3KooWFake', host: 'fake', gpus: [] }

  it('writes all output before exiting with the remote code', async () => {
    const MiB = 1024 * 1024
    script = async (ch) => {
      await ch.send(started)
      for (let i = 0; i < 8; i++) await ch.send({ t: 'out', fd: 1, data: new Uint8Array(MiB).fill(97 + i) })
      await ch.send({ t: 'exit', code: 7 })
    }
    const r = await runBin('vrun', ['big-output'], agentHome)
    expect(r.code).toBe(7)
    expect(r.stdout.length).toBe(8 * MiB)
    expect(r.stdout.at(-1)).toBe('h')
  })

  it('forwards a piped stdin and its end', async () => {
    script = async (ch) => {
      await ch.send(started)
      const got: Buffer[] = []
      for (;;) {
        const m = await ch.recv() as Record<string, unknown>
        if (m.t === 'eof') break
        if (m.t === 'stdin') got.push(Buffer.from(m.data as Uint8Array))
      }
      await ch.send({ t: 'out', fd: 1, data: Buffer.concat(got).reverse() })
      await ch.send({ t: 'exit', code: 0 })
    }
    const r = await runBin('vrun', ['rev'], agentHome, 'abc')
    expect(r).toEqual({ code: 0, stdout: 'cba', stderr: '' })
  })

  it('passes SIGINT on to the command', async () => {
    let gotSignal: unknown
    script = async (ch) => {
      await ch.send(started)
      await ch.send({ t: 'out', fd: 1, data: new TextEncoder().encode('ready\n') })
      for (;;) {
        const m = await ch.recv() as Record<string, unknown>
        if (m.t === 'signal') { gotSignal = m.sig; break }
      }
      await ch.send({ t: 'exit', code: 130, signal: 'SIGINT' })
    }
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/vrun.js'), 'sleep', '60'], { env: { ...process.env, VGRID_HOME: agentHome } })
    child.stdin.end()
    child.stdout.once('data', () => { child.kill('SIGINT') })
    const code = await new Promise((resolve) => child.on('close', resolve))
    expect(gotSignal).toBe('SIGINT')
    expect(code).toBe(130)
  })

  it('a closed stdout is passed on (the command gets SIGPIPE), and vrun exits with its status', async () => {
    let closeOut = false
    script = async (ch) => {
      await ch.send(started)
      const flooding = (async () => {
        while (!closeOut) await ch.send({ t: 'out', fd: 1, data: new Uint8Array(64 * 1024).fill(121) })
      })().catch(() => {})
      for (;;) {
        const m = await ch.recv() as Record<string, unknown> | undefined
        if (m === undefined) break
        if (m.t === 'close-out') { closeOut = true; break }
      }
      await flooding
      // what a command killed by SIGPIPE ends with; the session itself goes on to the end
      await ch.send({ t: 'out', fd: 2, data: new TextEncoder().encode('still here\n') })
      await ch.send({ t: 'exit', code: 141, signal: 'SIGPIPE' })
    }
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/vrun.js'), 'yes'], { env: { ...process.env, VGRID_HOME: agentHome } })
    child.stdin.end()
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.stdout.once('data', () => { child.stdout.destroy() })
    const code = await new Promise((resolve) => child.on('close', resolve))
    expect(closeOut).toBe(true)
    expect(stderr).toBe('still here\n')
    expect(code).toBe(141)
  })
})
