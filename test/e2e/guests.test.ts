/**
 * Guests are untrusted (DESIGN §5): a command another member sends tries what a hostile
 * program would, through the real binaries, and each attempt is refused with a sentinel
 * proving nothing outside changed. Also what a guest must still be able to do: run at its
 * submitter's path, nest vrun and vbatch, reach the network unless the owner says no, see
 * its GPUs and only those.
 */
import fs from 'node:fs'
import net from 'node:net'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startGrid, startAgent, stopAll, runCli, waitFor, tempDir, ROOT, runtimeDirOf, type AgentProc } from '../helpers/procs.js'
import { fakeGpuPath } from '../helpers/fake-gpus.js'
import { workspace, processesWith } from '../helpers/guests.js'

const ROOT_AGENT = process.getuid?.() === 0

let a: AgentProc
let b: AgentProc

// The executor says how many files each rescan of a copy read (a test below reads it).
beforeAll(async () => { [a, b] = await startGrid(2, { env: { DEBUG: 'vgrid:sync' } }) }, 60_000)
afterAll(async () => { await stopAll() })

/** Runs `script` on `on` from `from`, in `ws`. */
async function guest (script: string, opts: { from?: AgentProc, on?: AgentProc, ws?: string, args?: string[] } = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const from = opts.from ?? a
  const on = opts.on ?? b
  return await from.vrun(['--on', on.peer, ...(opts.args ?? []), 'sh', '-c', script], { cwd: opts.ws ?? workspace() })
}

describe('a guest command', () => {
  it('runs at its submitter\'s path, as an unprivileged user, with its own home and /tmp', async () => {
    const ws = workspace({ 'sub/in.txt': 'in\n' })
    const mine = tempDir('vgrid-guest-tmp-sentinel-')
    const r = await b.vrun(['--on', a.peer, '--cwd', 'sub', 'sh', '-c', 'pwd; id -u; echo "$VGRID_HOME"; echo "$VGRID_WORKSPACE"; cat in.txt; ls -A /tmp | tr "\\n" " "; echo; nproc'], { cwd: ws })
    expect(r.stderr).not.toContain('vgrid:')
    expect(r.code).toBe(0)
    const [pwd, uid, home, root, content, tmp, nproc] = r.stdout.split('\n')
    // pinned to the one core it reserved (a one-core machine lends it unpinned: still 1)
    expect(nproc).toBe('1')
    expect(pwd).toBe(path.join(ws, 'sub'))
    expect(root).toBe(ws)
    expect(home).not.toBe(a.home)
    expect(content).toBe('in')
    // Its /tmp is its own: only the ways to its workspace and to vgrid itself, where they lie in /tmp.
    const under = [ws, ROOT].filter((p) => !path.relative('/tmp', p).startsWith('..')).map((p) => path.relative('/tmp', p).split('/')[0]!)
    expect(tmp!.trim().split(' ').filter(Boolean).sort()).toEqual([...new Set(under)].sort())
    expect(tmp).not.toContain(path.basename(mine))
    // Under root, guests run as --guest-user (nobody); else as the agent's own user.
    if (ROOT_AGENT) expect(uid).toBe('65534')
    else expect(uid).toBe(String(process.getuid?.()))
  }, 30_000)

  it('leaves none of its directories on the executor, however it left them, and no link followed', async () => {
    // Its home, in the agent's runtime directory (in memory), goes; its /tmp on disk goes, or
    // is kept for the next guest when it is as the guest got it (empty, or holding only the
    // empty mount point of a scratch directory).
    const homes = path.join(runtimeDirOf(b.home), 'guests')
    const tmps = path.join(b.home, 'guests')
    const asGot = (dir: string): boolean => {
      const e = fs.readdirSync(dir)
      return e.length === 0 || (e.length === 1 && e[0] === 'work' && fs.readdirSync(path.join(dir, 'work')).length === 0)
    }
    const none = async (): Promise<void> => {
      await waitFor(() => fs.readdirSync(homes).length === 0 && fs.readdirSync(tmps).every((n) => asGot(path.join(tmps, n))), 'the guest\'s directories to be removed', 10_000, 20)
    }
    expect((await guest('true')).code).toBe(0)
    await none()
    // Left full, a link to what it must not touch among its leftovers, and its socket made a directory.
    const kept = tempDir('vgrid-guest-link-target-')
    fs.writeFileSync(path.join(kept, 'keep.txt'), 'keep\n')
    fs.chmodSync(kept, 0o755)
    const r = await guest([
      'mkdir -p /tmp/d/e', 'touch /tmp/a /tmp/d/e/f', `ln -s ${kept} /tmp/link`, `ln -s ${kept} "$VGRID_HOME/link"`,
      'touch "$VGRID_HOME/x"', 'mkdir "$VGRID_HOME/y"', 'rm -f "$VGRID_HOME/agent.sock"', 'mkdir "$VGRID_HOME/agent.sock"', 'echo left'
    ].join(' && '))
    expect(r.stdout, r.stderr).toBe('left\n')
    await none()
    expect(fs.readFileSync(path.join(kept, 'keep.txt'), 'utf8')).toBe('keep\n')
  }, 30_000)

  it('never shows one guest what another left in its /tmp or scratch directory', async () => {
    // Its /tmp holds the mount point of its scratch directory, and the way to vgrid itself
    // where that lies in /tmp (a CI checkout).
    const tmp = [...new Set(['work', ...[ROOT].filter((p) => !path.relative('/tmp', p).startsWith('..')).map((p) => path.relative('/tmp', p).split('/')[0]!)])].sort()
    const listed = (out: string): string[] => out.split('---\n')[0]!.split('\n').filter(Boolean).sort()
    for (let i = 0; i < 2; i++) {
      // the first run leaves files; the second must see an empty /tmp and working directory
      const r = await guest('ls -A /tmp; echo ---; ls -A; echo ---; echo left > /tmp/left-$VGRID_TASK_ID; echo left > here-$VGRID_TASK_ID; pwd', { args: ['--no-sync'] })
      expect(r.code, r.stderr).toBe(0)
      expect(listed(r.stdout)).toEqual(tmp)
      expect(r.stdout.split('---\n').slice(1).join('---\n')).toBe('---\n/tmp/work\n')
    }
    // a run that leaves nothing there leaves its directories for the next guest, as it got them
    for (let i = 0; i < 2; i++) {
      const r = await guest('ls -A /tmp; echo ---; ls -A', { args: ['--no-sync'] })
      expect(listed(r.stdout), r.stderr).toEqual(tmp)
      expect(r.stdout.endsWith('---\n')).toBe(true)
    }
  }, 30_000)

  it('cannot read the executor\'s keys, its home or the machine\'s homes', async () => {
    const key = fs.readFileSync(path.join(b.home, 'swarm.key'))
    fs.writeFileSync(path.join(b.home, 'sentinel.txt'), 'owner secret\n')
    const r = await guest([
      `cat ${b.home}/swarm.key ${b.home}/identity.key ${b.home}/sentinel.txt`,
      `cat "$VGRID_HOME"/swarm.key "$VGRID_HOME"/identity.key`,
      'ls /root /home',
      `ls ${path.dirname(b.home)}`,
      'echo done'
    ].join('; '))
    expect(r.stdout).toContain('done')
    expect(r.stdout).not.toContain('owner secret')
    expect(r.stdout).not.toContain(key.toString('utf8').trim().split('\n').at(-1))
    expect(r.stderr).toMatch(/No such file or directory/)
    expect(fs.readFileSync(path.join(b.home, 'sentinel.txt'), 'utf8')).toBe('owner secret\n')
  }, 30_000)

  it('cannot change the owner\'s policy or read the join token, and is told why', async () => {
    const before = fs.existsSync(path.join(b.home, 'config')) ? fs.readFileSync(path.join(b.home, 'config'), 'utf8') : undefined
    const r = await guest('vgrid agent set --max-tasks 1; echo "set $?"; vgrid join-token; echo "token $?"; vgrid status | grep -c "vgrid[12]\\." || true')
    expect(r.stdout).toContain('set 255')
    expect(r.stdout).toContain('token 255')
    expect(r.stdout).not.toMatch(/vgrid[12]\./)
    expect(r.stderr).toContain('a task cannot change the owner\'s policy')
    expect(r.stderr).toContain('a task cannot read the grid\'s join token')
    const after = fs.existsSync(path.join(b.home, 'config')) ? fs.readFileSync(path.join(b.home, 'config'), 'utf8') : undefined
    expect(after).toBe(before)
    const policy = await b.vgrid(['agent', 'set'])
    expect(policy.stdout).not.toMatch(/at most 1 /)
  }, 30_000)

  it('writes nowhere outside its copy: rm -rf of everything it can name leaves the machine as it was', async () => {
    const outside = tempDir('vgrid-guest-sentinel-')
    fs.writeFileSync(path.join(outside, 'keep.txt'), 'keep\n')
    const r = await guest(`rm -rf ${outside} ${b.home} ${a.home} /tmp/* ~ 2>/dev/null; echo x > ${outside}/new.txt; touch /usr/pwned /etc/pwned; echo done`)
    expect(r.stdout).toContain('done')
    expect(fs.readFileSync(path.join(outside, 'keep.txt'), 'utf8')).toBe('keep\n')
    expect(fs.existsSync(path.join(outside, 'new.txt'))).toBe(false)
    expect(fs.existsSync('/usr/pwned') || fs.existsSync('/etc/pwned')).toBe(false)
    expect(fs.existsSync(path.join(b.home, 'swarm.key'))).toBe(true)
    // b still works
    expect((await b.vgrid(['status'])).code).toBe(0)
  }, 30_000)

  it('writes its copy run after run: unchanged, the copy is not walked again; changed, what the sync made is the guest\'s', async () => {
    const began = Date.now() - 1
    const ws = workspace({ 'data/in.txt': 'in\n' })
    const run = async (script: string): Promise<string> => {
      const r = await a.vrun(['--on', b.peer, 'sh', '-c', script], { cwd: ws })
      expect(r.code, r.stderr).toBe(0)
      return r.stdout
    }
    await run('mkdir -p out && echo 1 > out/one && echo 1 >> data/in.txt')
    // This workspace's copy: the one whose marker was written since the test began (the file's tests run one by one).
    const markers = (): string[] => fs.readdirSync(path.join(b.home, 'workspaces'), { recursive: true }).map(String)
      .filter((f) => f.endsWith('.guest-owner') && fs.statSync(path.join(b.home, 'workspaces', f)).mtimeMs >= began)
    // As root the agent hands the copy to the guest user, and notes it beside the copy.
    const walked = (): number | undefined => {
      const m = markers()
      if (ROOT_AGENT) expect(m).toHaveLength(1)
      return m[0] === undefined ? undefined : fs.statSync(path.join(b.home, 'workspaces', m[0])).mtimeMs
    }
    const first = walked()
    // The outputs came back, so the next run's sync changes the copy: walked again.
    expect(await run('echo 2 > out/two && echo 2 >> data/in.txt && mkdir -p out/deeper && echo ok')).toBe('ok\n')
    const second = walked()
    // Nothing changed since: the copy is as the last run left it, the guest's, and not walked.
    expect(await run('echo ok')).toBe('ok\n')
    expect(await run('touch out/deeper/x && echo ok')).toBe('ok\n')
    if (ROOT_AGENT) expect(walked()).toBe(second)
    // A directory and a file the user made meanwhile (the sync makes them, as the agent): walked, and the guest writes in them.
    fs.mkdirSync(path.join(ws, 'fresh', 'empty'), { recursive: true })
    fs.writeFileSync(path.join(ws, 'fresh', 'note.txt'), 'note\n')
    expect(await run('echo 3 > fresh/empty/three && echo 3 >> fresh/note.txt && echo ok')).toBe('ok\n')
    if (ROOT_AGENT) expect(walked()).toBeGreaterThan(second!)
    if (ROOT_AGENT) expect(first).toBeDefined()
    expect(fs.readFileSync(path.join(ws, 'data', 'in.txt'), 'utf8')).toBe('in\n1\n2\n')
    expect(fs.readFileSync(path.join(ws, 'out', 'two'), 'utf8')).toBe('2\n')
    expect(fs.readFileSync(path.join(ws, 'fresh', 'empty', 'three'), 'utf8')).toBe('3\n')
    expect(fs.readFileSync(path.join(ws, 'fresh', 'note.txt'), 'utf8')).toBe('note\n3\n')
  }, 60_000)

  it('reads none of what the sync wrote again after the command, though the copy was handed to the guest', async () => {
    // Handing the copy to the guest user moves each file's ctime; a stat cache filled before
    // it read every file again after the command: 0.5–0.7 s for two 300 MB files, each first run.
    const ws = workspace({ 'a.txt': 'a\n', 'sub/b.bin': 'b'.repeat(300_000), 'sub/c.txt': 'c\n' })
    const from = b.output().length
    const r = await a.vrun(['--on', b.peer, 'sh', '-c', 'echo new > new.txt'], { cwd: ws })
    expect(r.code, r.stderr).toBe(0)
    expect(fs.readFileSync(path.join(ws, 'new.txt'), 'utf8')).toBe('new\n')
    // only the file the command wrote is read
    const line = await waitFor(() => /rescanned the copy .*\(read (\d+) files, (\d+) bytes\)/.exec(b.output().slice(from)), 'the executor\'s rescan', 10_000, 50)
    expect([line[1], line[2]]).toEqual(['1', '4'])
    // A command that changes nothing: the check after it vouches for every file, and nothing is scanned.
    const next = b.output().length
    const r2 = await a.vrun(['--on', b.peer, 'true'], { cwd: ws })
    expect(r2.code, r2.stderr).toBe(0)
    await waitFor(() => /checked the copy .* after the command in \d+ ms: unchanged/.test(b.output().slice(next)), 'the executor\'s check after the command', 10_000, 50)
    expect(b.output().slice(next)).not.toMatch(/rescanned the copy/)
  }, 30_000)

  it('leaves nothing running: setsid, nohup and double forks end with it', async () => {
    const marker = `60${Math.floor(Math.random() * 9000 + 1000)}`
    const r = await guest(`setsid sleep ${marker}1 & nohup sleep ${marker}2 >/dev/null 2>&1 & (sleep ${marker}3 &) ; sleep 0.2; echo started`)
    expect(r.stdout).toContain('started')
    await waitFor(() => processesWith(`sleep ${marker}`).length === 0, 'the guest\'s leftovers to be gone', 5_000, 50)
  }, 30_000)

  it('refuses a peer-sent cwd through a symlink and a workspace it is not in', async () => {
    const elsewhere = tempDir('vgrid-guest-elsewhere-')
    const ws = workspace()
    fs.symlinkSync(elsewhere, path.join(ws, 'esc'))
    const r = await a.vrun(['--on', b.peer, '--cwd', 'esc', 'sh', '-c', 'touch pwned'], { cwd: ws })
    expect(r.code).not.toBe(0)
    expect(fs.existsSync(path.join(elsewhere, 'pwned'))).toBe(false)
    // A nested vrun from a directory outside the guest's workspace is refused, with why.
    const nested = await guest('cd /tmp && vrun --cpus 0 true; echo "nested $?"')
    expect(nested.stdout).toContain('nested 255')
    expect(nested.stderr).toContain('a sub-task\'s workspace must be inside its task\'s')
  }, 30_000)
})

describe('a contained task', () => {
  it('runs a nested pipeline of vbatch and vrun, every step contained and its results back', async () => {
    const ws = workspace({
      'pipeline.sh': '#!/bin/sh\nset -e\n' +
        'vbatch --cpus 0 --name prep sh -c \'echo prep > prep.txt; id -u > prep-uid.txt\'\n' +
        'vbatch --cpus 0 --name train --after-success prep sh -c \'cat prep.txt > train.txt; echo train >> train.txt\'\n' +
        'vgrid task wait train\n' +
        'vrun --cpus 0 sh -c \'cat train.txt; echo "$VGRID_WORKSPACE"\' > final.txt\n'
    })
    fs.chmodSync(path.join(ws, 'pipeline.sh'), 0o755)
    const r = await a.vrun(['--on', b.peer, '--cpus', '0', './pipeline.sh'], { cwd: ws })
    expect(r.stderr).not.toMatch(/error|refused/i)
    expect(r.code).toBe(0)
    expect(fs.readFileSync(path.join(ws, 'final.txt'), 'utf8')).toBe(`prep\ntrain\n${ws}\n`)
    if (ROOT_AGENT) expect(fs.readFileSync(path.join(ws, 'prep-uid.txt'), 'utf8').trim()).toBe('65534')
  }, 60_000)
})

describe('a guest\'s stdin, stdout and stderr without a terminal', () => {
  it('are pipes, as in a shell: /dev/stdout, /dev/stderr, /dev/stdin and tee work by name', async () => {
    const ws = workspace()
    const r = await a.vrun(['--on', b.peer, 'sh', '-c',
      'echo out > /dev/stdout; echo err > /dev/stderr; cat /dev/stdin | tee /dev/stderr; ' +
      'python3 -c "open(\'/dev/stdout\', \'w\').write(\'py\\n\')"; [ -p /dev/stdin ] && [ -p /dev/stdout ] && echo pipes'],
    { cwd: ws, input: 'piped in\n' })
    expect(r.stderr).toBe('err\npiped in\n')
    expect(r.stdout).toBe('out\npiped in\npy\npipes\n')
    expect(r.code).toBe(0)
  })

  it('in a vbatch task too, whose log shows what it wrote to /dev/stderr', async () => {
    const ws = workspace()
    const r = await runCli('vbatch', ['-f', '--on', b.peer, 'sh', '-c', 'echo to-err > /dev/stderr; cat /dev/stdin; echo done'], { home: a.home, cwd: ws })
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('done\n')
    expect(r.stderr).toContain('to-err\n')
  })

  it('| head gives the command SIGPIPE, as a local pipeline does', async () => {
    const ws = workspace()
    // The script goes on after seq: it tells how seq ended, on stderr, which is still read.
    const script = 'seq 1 100000000; echo "seq ended with $?" >&2'
    const r = spawnSync('bash', ['-c', `'${process.execPath}' '${path.join(ROOT, 'bin/vrun.js')}' --on ${b.peer} sh -c '${script}' | head -n 1`],
      { cwd: ws, encoding: 'utf8', env: { ...process.env, VGRID_HOME: a.home }, timeout: 60_000 })
    expect(r.stdout).toBe('1\n')
    expect(r.stderr).toContain('seq ended with 141')
  })
})

describe('the owner\'s switches', () => {
  it('--guest-net none leaves a guest only its own loopback', async () => {
    const server = net.createServer((s) => { s.on('error', () => {}); s.end('hello\n') })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as net.AddressInfo).port
    try {
      const c = await startAgent({ join: a.token, args: ['--guest-net', 'none'] })
      await waitFor(async () => (await a.vgrid(['peers', '--json'])).stdout.includes(c.peer), 'the new member', 20_000, 100)
      const probe = `node -e "require('net').connect(${port}, '127.0.0.1').on('connect', () => { console.log('connected'); process.exit(0) }).on('error', (e) => { console.log(e.code); process.exit(0) })"`
      const off = await guest(probe, { on: c })
      expect(off.stdout.trim()).not.toBe('connected')
      const on = await guest(probe, { on: b })
      expect(on.stdout.trim()).toBe('connected')
    } finally {
      server.close()
    }
  }, 60_000)

  it('--isolation none says so at start and in vgrid peers', async () => {
    const c = await startAgent({ join: a.token, args: ['--isolation', 'none'] })
    expect(c.output()).toMatch(/guests +run unconfined/)
    // and every agent says whether it holds guests' memory to what they reserved
    expect((await c.vgrid(['status'])).stdout).toMatch(/guest memory +not enforced: /)
    await waitFor(async () => (await a.vgrid(['peers'])).stdout.includes('runs guests unconfined'), 'vgrid peers to say it', 20_000, 100)
    const r = await guest('id -u; echo "$VGRID_HOME"', { on: c })
    expect(r.code).toBe(0)
    // Unconfined: the agent's own user; still its own socket, not the agent's home.
    expect(r.stdout.split('\n')[0]).toBe(String(process.getuid?.()))
    expect(r.stdout.split('\n')[1]).not.toBe(c.home)
  }, 60_000)

  it('without bubblewrap the agent starts, lends nothing, and says how to fix it', async () => {
    const c = await startAgent({ join: a.token, env: { VGRID_BWRAP: '/nonexistent/bwrap' } })
    expect(c.output()).toContain('lending nothing')
    expect(c.output()).toContain('apt-get install bubblewrap')
    expect(c.output()).toContain('--isolation none')
    await waitFor(async () => (await a.vgrid(['peers'])).stdout.includes('lends nothing: it cannot sandbox guests'), 'vgrid peers to say it', 20_000, 100)
    const r = await guest('true', { on: c })
    expect(r.code).toBe(255)
  }, 60_000)

  it('--guest-user never takes root', async () => {
    const r = await runCli('vgrid', ['agent', '--listen', '/ip4/127.0.0.1/tcp/0', '--guest-user', 'root'], { home: tempDir(), timeoutMs: 20_000 })
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('guests never run as root')
  }, 30_000)

  it('shows a guest only the device nodes of its GPUs', async () => {
    const dev = tempDir('vgrid-fake-dev-')
    for (const n of ['nvidia0', 'nvidia1', 'nvidia2', 'nvidia3', 'nvidiactl', 'nvidia-uvm']) fs.writeFileSync(path.join(dev, n), '')
    const c = await startAgent({ join: a.token, env: { ...fakeGpuPath('NVIDIA A100:40960,NVIDIA A100:40960,NVIDIA A100:40960,NVIDIA A100:40960'), VGRID_DEV_DIR: dev } })
    await waitFor(async () => (await a.vgrid(['peers', '--json'])).stdout.includes(c.peer), 'the GPU member', 20_000, 100)
    const r = await guest('echo "$CUDA_VISIBLE_DEVICES"; ls /dev | grep nvidia', { on: c, args: ['--gpus', '2'] })
    expect(r.code).toBe(0)
    const [visible, ...nodes] = r.stdout.trim().split('\n')
    const given = visible!.split(',')
    expect(given).toHaveLength(2)
    expect(nodes.sort()).toEqual([...given.map((i) => `nvidia${i}`), 'nvidia-uvm', 'nvidiactl'].sort())
    const none = await guest('ls /dev | grep -c nvidia || true', { on: c, args: ['--gpus', '0'] })
    expect(none.stdout.trim()).toBe('0')
  }, 60_000)
})
