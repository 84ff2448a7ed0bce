/**
 * `vrun` through the real binaries on a two-agent loopback grid: what a user sees in their
 * terminal (output, stdin, exit codes, signals, --on) must be what the command did remotely.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { startGrid, stopAll, spawnCli, startCli, collect, waitFor, type AgentProc } from '../helpers/procs.js'

let a: AgentProc
let b: AgentProc

beforeAll(async () => {
  [a, b] = await startGrid(2)
}, 60_000)

afterAll(async () => { await stopAll() })

describe('vrun on a remote member', () => {
  it('prints the remote output and exits 0', async () => {
    const r = await a.vrun(['--on', b.peer, 'sh', '-c', 'echo hello from $VGRID_TASK_ID'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(/^hello from [0-9a-f]{16}\n$/)
    expect(r.code).toBe(0)
  })

  it('runs on the member it was asked for', async () => {
    const r = await a.vrun(['--on', b.peer, 'sh', '-c', 'echo $VGRID_PEER'])
    expect(r.stdout.trim()).toBe(b.peer)
    const local = await a.vrun(['--on', a.peer, 'sh', '-c', 'echo $VGRID_PEER'])
    expect(local.stdout.trim()).toBe(a.peer)
  })

  it('passes options after the command to the command', async () => {
    const r = await a.vrun(['--on', b.peer, 'ls', '-la', '/'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^total /)
  })

  it('exits with the remote exit code', async () => {
    expect((await a.vrun(['--on', b.peer, 'sh', '-c', 'exit 3'])).code).toBe(3)
    expect((await a.vrun(['--on', b.peer, 'false'])).code).toBe(1)
  })

  it('exits 128+N when the remote command is killed by signal N', async () => {
    const r = await a.vrun(['--on', b.peer, 'sh', '-c', 'kill -TERM $$'])
    expect(r.code).toBe(143)
  })

  it('keeps stdout and stderr apart', async () => {
    const r = await a.vrun(['--on', b.peer, 'sh', '-c', 'echo out; echo err >&2; echo out2'])
    expect(r.stdout).toBe('out\nout2\n')
    expect(r.stderr).toBe('err\n')
  })

  it('forwards stdin up to EOF', async () => {
    const input = 'line one\nline two\n'.repeat(1000)
    const r = await a.vrun(['--on', b.peer, 'wc', '-c'], { input })
    expect(r.stdout.trim()).toBe(String(input.length))
    const cat = await a.vrun(['--on', b.peer, 'cat'], { input: 'round trip' })
    expect(cat.stdout).toBe('round trip')
  })

  it('passes environment variables with -e', async () => {
    const r = await a.vrun(['-e', 'GREETING=hi there', '-e', 'FROM_ENV', '--on', b.peer, 'sh', '-c', 'echo "$GREETING/$FROM_ENV"'], { env: { FROM_ENV: 'copied' } })
    expect(r.stdout).toBe('hi there/copied\n')
  })

  it('passes 90,000 arguments, as a local command line would', async () => {
    const many = Array.from({ length: 90_000 }, (_, i) => String(i))
    const r = await a.vrun(['--on', b.peer, '--no-sync', 'sh', '-c', 'echo $# ${90000}', 'x', ...many])
    expect(r.stdout, r.stderr).toBe('90000 89999\n')
  })

  it('gives the command its own PWD, not the agent\'s shell state', async () => {
    fs.mkdirSync(path.join(a.workspace, 'pwd/sub'), { recursive: true })
    // env, not a shell: a shell would set PWD itself
    const r = await a.vrun(['--on', b.peer, '--cwd', 'pwd/sub', 'env'], { env: { TERM: 'xterm' } })
    const env = new Map(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
    expect(env.get('PWD')).toBe(path.join(env.get('VGRID_WORKSPACE')!, 'pwd/sub'))
    for (const k of ['OLDPWD', 'TERM', '_']) expect(env.has(k), k).toBe(false)
  })

  it('runs in --cwd relative to the workspace copy, and refuses one the workspace lacks', async () => {
    fs.mkdirSync(path.join(a.workspace, 'sub/dir'), { recursive: true })
    const r = await a.vrun(['--on', b.peer, '--cwd', 'sub/dir', 'sh', '-c', 'pwd; echo $VGRID_WORKSPACE'])
    const [pwd, ws] = r.stdout.trim().split('\n')
    expect(pwd).toBe(`${ws}/sub/dir`)
    const typo = await a.vrun(['--on', b.peer, '--cwd', 'sub/dri', 'pwd'])
    expect(typo.code).toBe(255)
    expect(typo.stderr).toContain('--cwd sub/dri: ')
    expect(typo.stderr).toContain('is not a directory of the workspace')
    expect(fs.existsSync(path.join(a.workspace, 'sub/dri'))).toBe(false)
    // With --no-sync it is made in the empty scratch directory.
    const scratch = await a.vrun(['--on', b.peer, '--no-sync', '--cwd', 'new/dir', 'sh', '-c', 'pwd'])
    expect(scratch.stdout.trim()).toMatch(/\/new\/dir$/)
  })

  it('says so when the command does not exist', async () => {
    const r = await a.vrun(['--on', b.peer, 'no-such-command-vgrid'])
    expect(r.code).toBe(127)
    expect(r.stderr).toContain('no-such-command-vgrid')
  })

  it('delivers 100 MB of output complete and in order', async () => {
    // 2,000 blocks of 50,000 bytes, each starting with its number (awk: a shell loop of head
    // and tr took most of this test's minute, starting 4,000 processes)
    const cmd = 'awk \'BEGIN { x = "xxxxxxxx"; while (length(x) < 49992) x = x x; x = substr(x, 1, 49992); for (i = 0; i < 2000; i++) printf "%08d%s", i, x }\''
    const expected = createHash('sha256').update(execFileSync('sh', ['-c', cmd], { maxBuffer: 200e6 })).digest('hex')
    const child = spawnCli('vrun', ['--on', b.peer, 'sh', '-c', cmd], { home: a.home })
    const r = await collect(child, 120_000)
    expect(r.code).toBe(0)
    expect(r.stdoutBytes.length).toBe(100_000_000)
    expect(createHash('sha256').update(r.stdoutBytes).digest('hex')).toBe(expected)
  }, 180_000)

  it('loses nothing from a process that exits right after writing', async () => {
    const r = await a.vrun(['--on', b.peer, 'sh', '-c', 'seq 1 300000; echo done >&2; exit 4'])
    expect(r.code).toBe(4)
    expect(r.stdout).toBe(execFileSync('seq', ['1', '300000'], { maxBuffer: 16e6 }).toString())
    expect(r.stderr).toBe('done\n')
  })

  it('forwards Ctrl-C (SIGINT) to the remote process', async () => {
    const v = startCli('vrun', ['--on', b.peer, 'sh', '-c', 'trap "echo got INT; exit 5" INT; echo ready; while :; do sleep 0.05; done'], { home: a.home })
    await waitFor(() => v.stdout().includes('ready'), 'the remote command to start')
    v.child.kill('SIGINT')
    const r = await v.done
    expect(r.stdout).toContain('got INT')
    expect(r.code).toBe(5)
  })

  it('forwards SIGTERM', async () => {
    const v = startCli('vrun', ['--on', b.peer, 'sh', '-c', 'trap "echo got TERM; exit 6" TERM; echo ready; while :; do sleep 0.05; done'], { home: a.home })
    await waitFor(() => v.stdout().includes('ready'), 'the remote command to start')
    v.child.kill('SIGTERM')
    const r = await v.done
    expect(r.stdout).toContain('got TERM')
    expect(r.code).toBe(6)
  })

  it('kills the remote command at the second Ctrl-C', async () => {
    const v = startCli('vrun', ['--on', b.peer, 'sh', '-c', 'trap "echo got INT" INT; echo ready; while :; do sleep 0.05; done'], { home: a.home })
    await waitFor(() => v.stdout().includes('ready'), 'the remote command to start')
    v.child.kill('SIGINT')
    await waitFor(() => v.stdout().includes('got INT'), 'the first Ctrl-C to reach the command')
    v.child.kill('SIGINT')
    expect((await v.done).code).toBe(137)
  })
})

describe('vrun errors', () => {
  it('exits 255 with a message for an unknown peer', async () => {
    const r = await a.vrun(['--on', 'nosuchpeer', 'true'])
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/no member of the grid is called nosuchpeer/)
  })

  it('exits 255 naming the largest member when no member could ever fit', async () => {
    const r = await a.vrun(['--gpus', '4', 'true'])
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/could ever run/)
  })

  it('resolves --on by a unique prefix of the peer id', async () => {
    // Every peer id of an Ed25519 key starts with 12D3KooW: take enough characters to be unique.
    const r = await a.vrun(['--on', b.peer.slice(0, 20), 'sh', '-c', 'echo $VGRID_PEER'])
    expect(r.stdout.trim()).toBe(b.peer)
  })

  it('resolves --on by the end of the peer id as vgrid peers shows it, and says what that member lacks', async () => {
    const table = (await a.vgrid(['peers'])).stdout
    const shown = new RegExp(`(…\\w*${b.peer.slice(-6)})\\s`).exec(table)![1]!
    expect(b.peer.endsWith(shown.slice(1))).toBe(true)
    const r = await a.vrun(['--on', shown, 'sh', '-c', 'echo $VGRID_PEER'])
    expect(r.stdout.trim()).toBe(b.peer)
    // more GPUs than that member has: what it lacks, not "no member of the grid could ever"
    const lacking = await a.vrun(['--on', shown, '--gpus', '4', 'true'])
    expect(lacking.code).toBe(255)
    expect(lacking.stderr).toMatch(new RegExp(`^vrun: \\S+ \\(${shown}\\) could never run a command that needs [^:]*4 GPUs: it lends `))
  })

  it('refuses a hostname shared by several members as ambiguous', async () => {
    const r = await a.vrun(['--on', a.host, 'true'])
    // the command line's to fix (README, "Exit statuses")
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/2 members have the hostname/)
  })
})
