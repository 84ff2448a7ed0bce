/**
 * Joining a grid as a user does, through the real `vgrid` binary: the token from a file, the
 * environment or stdin (never on a command line `ps` shows), the printed join line run as
 * printed, a typo refused at once, and a token of another grid reported instead of silence.
 */
import fs from 'node:fs'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { encode } from 'cborg'
import { describe, it, expect, afterEach } from 'vitest'
import { startAgent, stopAll, peersOf, waitFor, tempDir, runCli, collect, ROOT, type AgentProc } from '../helpers/procs.js'
import { createSwarmKey, decodeJoinToken, encodeJoinToken } from '../../src/grid/index.js'

afterEach(async () => { await stopAll() })

/** Every process of this machine whose command line holds `secret`. */
function argvHolding (secret: string): string[] {
  const found: string[] = []
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8')
      if (argv.includes(secret)) found.push(`${name}: ${argv.split('\0').join(' ')}`)
    } catch {}
  }
  return found
}

async function inViewOf (a: AgentProc, n: number): Promise<void> {
  await waitFor(async () => (await peersOf(a)).length === n, `${n} members in the view of the first agent`, 30_000, 100)
}

describe('joining with a token', () => {
  it('takes the token from --join-file, VGRID_JOIN_TOKEN and stdin, and no command line holds it', async () => {
    const a = await startAgent()
    expect(a.token).toMatch(/^vgrid2\./)
    const file = path.join(tempDir('vgrid-token-'), 'grid.token')
    fs.writeFileSync(file, `${a.token}\n`, { mode: 0o600 })
    const [b, c, d] = await Promise.all([
      startAgent({ args: ['--join-file', file] }),
      startAgent({ env: { VGRID_JOIN_TOKEN: a.token } }),
      startAgent({ args: ['--join', '-'], stdin: `${a.token}\n` })
    ])
    await inViewOf(a, 4)
    for (const x of [b, c, d]) expect(x.output()).toContain('joining the grid of the token')
    // the secret is in no process's argv: not the agents', not the test's
    expect(argvHolding(a.token)).toEqual([])
    // nor in what the joined agents' commands inherit
    const env = await c.vrun(['--on', c.peer, 'env'])
    expect(env.code).toBe(0)
    expect(env.stdout).toContain('VGRID_TASK_ID=')
    expect(env.stdout).not.toContain('VGRID_JOIN_TOKEN')
  }, 120_000)

  it('prints a join line that, run as printed, joins this grid through this very binary', async () => {
    const a = await startAgent()
    const line = await waitFor(() => a.output().split('\n').find((l) => l.includes('agent --join -'))?.trim(), 'the join line in the banner')
    expect(line).toBe(`echo ${a.token} | ${path.join(ROOT, 'bin/vgrid.js')} agent --join -`)
    const status = await a.vgrid(['status'])
    expect(status.stdout).toContain(`  ${line}\n`)

    const home = tempDir()
    // as printed, plus a free port: other agents of this machine may hold the default ones;
    // typed into a shell (its stdin), as a user would, not handed to it on its command line
    const shell = spawn('sh', ['-s'], {
      cwd: tempDir('vgrid-cwd-'), env: { ...process.env, VGRID_HOME: home }, stdio: ['pipe', 'pipe', 'pipe']
    })
    const done = collect(shell, 120_000, `${line} --listen /ip4/127.0.0.1/tcp/0 --http 127.0.0.1:0\n`)
    try {
      await inViewOf(a, 2)
      expect(argvHolding(a.token)).toEqual([])
    } finally {
      await runCli('vgrid', ['agent', 'stop'], { home })
      const r = await done
      expect(r.stdout).toContain('joining the grid of the token')
    }
  }, 120_000)

  it('refuses a token with a typo at once, before the agent starts, saying why', async () => {
    const a = await startAgent()
    const i = a.token.length - 20
    const typo = a.token.slice(0, i) + (a.token[i] === 'x' ? 'y' : 'x') + a.token.slice(i + 1)
    const file = path.join(tempDir('vgrid-token-'), 'grid.token')
    fs.writeFileSync(file, typo)
    for (const how of [{ args: ['--join-file', file] }, { args: [], env: { VGRID_JOIN_TOKEN: typo } }, { args: ['--join', '-'], input: typo }]) {
      const home = tempDir()
      const r = await runCli('vgrid', ['agent', '--listen', '/ip4/127.0.0.1/tcp/0', '--http', 'off', ...how.args], { home, ...(how.env !== undefined ? { env: how.env } : {}), ...(how.input !== undefined ? { input: how.input } : {}) })
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toContain('the join token is not valid: its checksum does not match')
      expect(r.stderr).not.toContain(typo)
      // refused before anything was made: no key written, no agent
      expect(fs.existsSync(path.join(home, 'swarm.key'))).toBe(false)
    }
  }, 60_000)

  it('joins with a token of the form before the checksum (vgrid1.), warning that a typo in it cannot be detected', async () => {
    const a = await startAgent()
    const info = decodeJoinToken(a.token)
    const raw = Buffer.from(new TextDecoder().decode(info.swarmKey).split('\n')[2]!, 'hex')
    const old = 'vgrid1.' + Buffer.from(encode({ k: raw, a: info.addrs })).toString('base64url')
    const b = await startAgent({ env: { VGRID_JOIN_TOKEN: old } })
    await inViewOf(a, 2)
    expect(b.output()).toContain('warning: the join token has no checksum (an older form)')
    expect(b.output()).toContain('`vgrid join-token` on a member prints a new one')
  }, 90_000)

  it('says so, on stderr and in vgrid status, when a token of another grid reaches no member', async () => {
    const a = await startAgent()
    // a's address, another grid's key: a well-formed token that a's grid refuses
    const other = encodeJoinToken({ swarmKey: createSwarmKey(), addrs: decodeJoinToken(a.token).addrs })
    const b = await startAgent({ env: { VGRID_JOIN_TOKEN: other } })
    const warning = `could not reach any member of the grid at ${decodeJoinToken(other).addrs[0]!}`
    // 10 s after the start, on a calm machine; the deadline bounds a hang on a loaded one
    await waitFor(() => b.output().includes(warning), 'the warning on stderr', 60_000, 200)
    expect(b.output()).toContain('(wrong join token, or the address is unreachable)')
    const text = await b.vgrid(['status'])
    expect(text.stdout).toMatch(new RegExp(`^warning +${warning.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`, 'm'))
    const json = JSON.parse((await b.vgrid(['status', '--json'])).stdout).status
    expect(json.unreachable).toContain(warning)
    expect(json.gridSize).toBe(1)
  }, 90_000)
})
