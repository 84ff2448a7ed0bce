/**
 * Workspace sync through the real binaries on a two-agent loopback grid: `vrun --on B` runs
 * in a copy of the workspace on B, and what the command writes, changes or deletes appears
 * here when vrun returns.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { BIN, startAgent, startGrid, stopAll, startCli, waitFor, tempDir, type AgentProc } from '../helpers/procs.js'
import { SMALL_TREE_ENTRIES } from '../../src/fs-sync/scan-watch.js'
import { THREAD_NAMES } from '../../src/common/thread-name.js'

let a: AgentProc
let b: AgentProc

// The executor's log says what each pull went over (a test below reads it).
beforeAll(async () => { [a, b] = await startGrid(2, { env: { DEBUG: 'vgrid:sync' } }) }, 60_000)
afterAll(async () => { await stopAll() })

/** A fresh workspace with the given files (string = content; { exec } = executable). */
function workspace (files: Record<string, string | { content: string, exec: true }> = {}): string {
  const dir = tempDir('vgrid-ws-')
  for (const [rel, f] of Object.entries(files)) {
    const p = path.join(dir, rel)
    fs.mkdirSync(path.dirname(p), { recursive: true })
    fs.writeFileSync(p, typeof f === 'string' ? f : f.content, { mode: typeof f === 'string' ? 0o644 : 0o755 })
  }
  return dir
}

const vrunIn = async (cwd: string, args: string[], env: Record<string, string> = {}) => await a.vrun(['--on', b.peer, ...args], { cwd, env: { VGRID_VERBOSE: '1', ...env } })

/** The names of a process's threads, from /proc. */
function threadNames (pid: number): string[] {
  return fs.readdirSync(`/proc/${pid}/task`).map((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim())
}

function sentChunks (stderr: string): number {
  const m = /synced [\d,]+ files?, ([\d,]+) chunks? /.exec(stderr)
  if (m === null) throw new Error(`no sync summary in: ${stderr}`)
  return Number(m[1].replaceAll(',', ''))
}

describe('vrun with a workspace', () => {
  it('runs in the workspace files on the remote member and brings the outputs back', async () => {
    const ws = workspace({
      'data/input.txt': 'one\ntwo\nthree\n',
      'process.sh': { content: '#!/bin/sh\nmkdir -p results\nwc -l < data/input.txt > results/count.txt\necho "$VGRID_PEER" > results/where.txt\n', exec: true }
    })
    const r = await vrunIn(ws, ['./process.sh'])
    expect(r.stderr).toMatch(/synced 2 files/)
    expect(r.code).toBe(0)
    expect(fs.readFileSync(path.join(ws, 'results/count.txt'), 'utf8').trim()).toBe('3')
    // It really ran on b.
    expect(fs.readFileSync(path.join(ws, 'results/where.txt'), 'utf8').trim()).toBe(b.peer)
  })

  it('brings back a synced file the command rewrote with the same size and mtime', async () => {
    // the executor trusts what it has just written without reading it again after the
    // command: a rewrite that keeps size and mtime must still be seen (its ctime moved)
    const ws = workspace({ 'state.txt': 'aaaa', 'other.txt': 'kept' })
    fs.utimesSync(path.join(ws, 'state.txt'), 1_700_000_000, 1_700_000_000)
    const r = await vrunIn(ws, ['sh', '-c', 'printf bbbb > state.txt && touch -d @1700000000 state.txt && stat -c %s.%Y state.txt'])
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe('4.1700000000')
    expect(fs.readFileSync(path.join(ws, 'state.txt'), 'utf8')).toBe('bbbb')
    expect(fs.readFileSync(path.join(ws, 'other.txt'), 'utf8')).toBe('kept')
  })

  it('brings back a renamed and a copied file without their bytes travelling again', async () => {
    const ws = workspace({ 'model.pt': randomBytes(3 * 2 ** 20).toString('base64') })
    const before = fs.readFileSync(path.join(ws, 'model.pt'))
    const r = await vrunIn(ws, ['sh', '-c', 'mv model.pt final.pt && cp final.pt backup.pt'])
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/brought back 3 files, 0 chunks \(0 B\) received/)
    expect(fs.existsSync(path.join(ws, 'model.pt'))).toBe(false)
    expect(fs.readFileSync(path.join(ws, 'final.pt')).equals(before)).toBe(true)
    expect(fs.readFileSync(path.join(ws, 'backup.pt')).equals(before)).toBe(true)
  })

  it('runs python3 train.py, and model files appear here', async () => {
    const ws = workspace({
      'train.py': 'import sys, json, os\nos.makedirs("results", exist_ok=True)\nopen("model.pt", "wb").write(bytes(range(256)) * 100)\njson.dump({"epochs": int(sys.argv[2])}, open("results/metrics.json", "w"))\nprint("trained")\n'
    })
    const r = await vrunIn(ws, ['python3', 'train.py', '--epochs', '1'])
    expect(r.stdout).toBe('trained\n')
    expect(fs.readFileSync(path.join(ws, 'model.pt')).length).toBe(25600)
    expect(JSON.parse(fs.readFileSync(path.join(ws, 'results/metrics.json'), 'utf8'))).toEqual({ epochs: 1 })
  })

  it('runs in the same relative directory, at the submitter\'s own path (VGRID_WORKSPACE)', async () => {
    // Inside a git work tree the workspace is its top level, not the current directory.
    const ws = workspace({ 'a/b/file.txt': 'x', '.git/HEAD': 'ref: refs/heads/main\n' })
    const r = await vrunIn(path.join(ws, 'a/b'), ['sh', '-c', 'cat file.txt; echo; pwd; echo $VGRID_WORKSPACE'])
    const [content, pwd, root] = r.stdout.trim().split('\n')
    expect(content).toBe('x')
    expect(pwd).toBe(`${root}/a/b`)
    // The sandbox shows the copy where the submitter has the workspace.
    expect(root).toBe(fs.realpathSync(ws))
  })

  it('sends one small chunk after a one-line edit, and nothing when nothing changed', async () => {
    const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${'x'.repeat(40)}`)
    const ws = workspace({ 'train.py': lines.join('\n') + '\n', 'other.txt': 'unchanged' })
    const first = await vrunIn(ws, ['true'])
    expect(sentChunks(first.stderr)).toBeGreaterThan(5)
    const same = await vrunIn(ws, ['true'])
    expect(sentChunks(same.stderr)).toBe(0)
    lines[10_000] = 'line edited'
    fs.writeFileSync(path.join(ws, 'train.py'), lines.join('\n') + '\n')
    const edited = await vrunIn(ws, ['sh', '-c', 'grep -c "line edited" train.py'])
    expect(edited.stdout.trim()).toBe('1')
    expect(sentChunks(edited.stderr)).toBeLessThanOrEqual(2)
    expect(sentChunks(edited.stderr)).toBeGreaterThanOrEqual(1)
  })

  it('keeps exec bits and symlinks, and brings back deletions and new links', async () => {
    const ws = workspace({ 'tool.sh': { content: '#!/bin/sh\necho tool\n', exec: true }, 'old.txt': 'old', 'keep.txt': 'keep' })
    fs.symlinkSync('keep.txt', path.join(ws, 'link-in'))
    fs.symlinkSync('/etc/hostname', path.join(ws, 'link-out'))
    const r = await vrunIn(ws, ['sh', '-c', 'test -x tool.sh && ./tool.sh; readlink link-in; readlink link-out; rm old.txt; ln -s keep.txt new-link; printf "#!/bin/sh\\n" > made.sh; chmod +x made.sh'])
    expect(r.stdout).toBe('tool\nkeep.txt\n/etc/hostname\n')
    expect(fs.existsSync(path.join(ws, 'old.txt'))).toBe(false)
    expect(fs.readlinkSync(path.join(ws, 'new-link'))).toBe('keep.txt')
    expect(fs.statSync(path.join(ws, 'made.sh')).mode & 0o100).toBe(0o100)
    expect(fs.readFileSync(path.join(ws, 'keep.txt'), 'utf8')).toBe('keep')
  })

  it('keeps a file changed here during the run, writing the remote one beside it', async () => {
    const ws = workspace({ 'shared.txt': 'original\n' })
    const v = startCli('vrun', ['--on', b.peer, 'sh', '-c', 'echo remote > shared.txt; echo ready; read x'], { home: a.home, cwd: ws })
    await waitFor(() => v.stdout().includes('ready'), 'the remote command to write')
    fs.writeFileSync(path.join(ws, 'shared.txt'), 'local edit\n')
    v.child.stdin?.end('go\n')
    const r = await v.done
    expect(r.code).toBe(0)
    expect(fs.readFileSync(path.join(ws, 'shared.txt'), 'utf8')).toBe('local edit\n')
    const conflict = fs.readdirSync(ws).find((n) => n.startsWith('shared.txt.vgrid-conflict-'))
    expect(conflict).toBeDefined()
    expect(fs.readFileSync(path.join(ws, conflict!), 'utf8')).toBe('remote\n')
    expect(r.stderr).toMatch(/shared\.txt changed here/)
  })

  it('keeps deleted a file deleted here during the run, and says so', async () => {
    const ws = workspace({ 'shared.txt': 'original\n' })
    const v = startCli('vrun', ['--on', b.peer, 'sh', '-c', 'echo remote > shared.txt; echo ready; read x'], { home: a.home, cwd: ws })
    await waitFor(() => v.stdout().includes('ready'), 'the remote command to write')
    fs.rmSync(path.join(ws, 'shared.txt'))
    v.child.stdin?.end('go\n')
    const r = await v.done
    expect(r.code).toBe(0)
    expect(fs.existsSync(path.join(ws, 'shared.txt'))).toBe(false)
    const conflict = fs.readdirSync(ws).find((n) => n.startsWith('shared.txt.vgrid-conflict-'))
    expect(fs.readFileSync(path.join(ws, conflict!), 'utf8')).toBe('remote\n')
    expect(r.stderr).toContain(`vrun: shared.txt was deleted here while the command ran, and the command changed it: kept it deleted, wrote the command's as ${conflict!}\n`)
  })

  it('honours .vgridignore both ways', async () => {
    const ws = workspace({ '.vgridignore': 'secret.txt\ncache/\n', 'secret.txt': 'do not send', 'cache/big': 'x', 'code.txt': 'code' })
    const r = await vrunIn(ws, ['sh', '-c', 'ls -A | sort | tr "\\n" " "; mkdir -p cache; echo remote > cache/out; echo remote > secret.txt'])
    expect(r.stdout).toBe('.vgridignore code.txt ')
    expect(fs.readFileSync(path.join(ws, 'secret.txt'), 'utf8')).toBe('do not send')
    expect(fs.existsSync(path.join(ws, 'cache/out'))).toBe(false)
  })

  it('syncs 5,000 small files and brings 1,000 new ones back', async () => {
    const ws = workspace()
    for (let d = 0; d < 50; d++) {
      fs.mkdirSync(path.join(ws, `d${d}`))
      for (let f = 0; f < 100; f++) fs.writeFileSync(path.join(ws, `d${d}`, `f${f}.txt`), `${d}/${f}\n`)
    }
    const r = await vrunIn(ws, ['sh', '-c', 'find . -type f | wc -l; cat d49/f99.txt; mkdir out; i=0; while [ $i -lt 1000 ]; do echo $i > out/$i; i=$((i+1)); done'])
    expect(r.stdout).toBe('5000\n49/99\n')
    expect(fs.readdirSync(path.join(ws, 'out')).length).toBe(1000)
    expect(fs.readFileSync(path.join(ws, 'out/999'), 'utf8')).toBe('999\n')
  }, 120_000)

  it('syncs a file of 200 MB intact', async () => {
    const ws = workspace()
    const big = path.join(ws, 'data.bin')
    const fd = fs.openSync(big, 'w')
    const block = randomBytes(4 * 1024 * 1024)
    const hash = createHash('sha256')
    for (let i = 0; i < 50; i++) {
      block[0] = i
      fs.writeSync(fd, block)
      hash.update(block)
    }
    fs.closeSync(fd)
    const from = b.output().length
    const r = await vrunIn(ws, ['sha256sum', 'data.bin'])
    expect(r.stdout.split(' ')[0]).toBe(hash.digest('hex'))
    // the bytes came over the data plane, not the libp2p stream
    const pulled = /pulled .* blobs \((\d+) given back to their thread once written\).* over [1-4] data plane connection/.exec(b.output().slice(from))
    expect(pulled).not.toBeNull()
    // the chunks only this file holds went back to the pulling thread, after their write
    expect(Number(pulled![1])).toBeGreaterThan(0)
    // the threads that carried it have names of their own (top -H, ps -T, perf); the
    // process keeps its own
    expect(threadNames(a.proc.pid!)).toContain(THREAD_NAMES.serve)
    expect(threadNames(b.proc.pid!)).toContain(THREAD_NAMES.pull)
    for (const p of [a, b]) expect(fs.readFileSync(`/proc/${p.proc.pid!}/comm`, 'utf8').trim()).toBe('node')
  }, 180_000)

  it('goes over the libp2p stream when the submitter serves no data plane', async () => {
    const c = await startAgent({ join: a.token, env: { VGRID_DATA_PLANE: 'off' } })
    await waitFor(async () => (await c.vgrid(['peers', '--json'])).stdout.includes(b.peer), 'the new member to see b', 20_000, 100)
    const ws = workspace({ 'data.bin': randomBytes(3 * 2 ** 20).toString('base64') })
    const from = b.output().length
    const r = await c.vrun(['--on', b.peer, 'sha256sum', 'data.bin'], { cwd: ws })
    expect(r.code).toBe(0)
    expect(r.stdout.split(' ')[0]).toBe(createHash('sha256').update(fs.readFileSync(path.join(ws, 'data.bin'))).digest('hex'))
    expect(b.output().slice(from)).toMatch(/pulled .* over the sync stream/)
    await c.stop()
  }, 60_000)

  it('runs in the workspace itself when placed on the local agent', async () => {
    const ws = workspace({ 'in.txt': 'here' })
    const r = await a.vrun(['--on', a.peer, 'sh', '-c', 'cat in.txt > out.txt; pwd'], { cwd: ws })
    expect(r.stdout.trim()).toBe(fs.realpathSync(ws))
    expect(fs.readFileSync(path.join(ws, 'out.txt'), 'utf8')).toBe('here')
  })

  it('runs in an empty scratch directory with --no-sync', async () => {
    const ws = workspace({ 'in.txt': 'here' })
    const r = await vrunIn(ws, ['--no-sync', 'sh', '-c', 'ls -A | wc -l; touch made'])
    expect(r.stdout.trim()).toBe('0')
    expect(fs.existsSync(path.join(ws, 'made'))).toBe(false)
    const scratch = path.join(b.home, 'scratch')
    // the one the command wrote in is gone, and never serves another run
    await waitFor(() => fs.readdirSync(scratch).length === 0, 'the scratch directory written in to be removed')
    expect((await vrunIn(ws, ['--no-sync', 'sh', '-c', 'ls -A | wc -l'])).stdout.trim()).toBe('0')
    // one left empty is kept, empty, for the next run
    await waitFor(() => fs.readdirSync(scratch).length === 1, 'the empty scratch directory to be kept')
    const [kept] = fs.readdirSync(scratch)
    expect(fs.readdirSync(path.join(scratch, kept!))).toEqual([])
  })

  it('uses the git top-level as the workspace, and --workspace overrides it', async () => {
    const ws = workspace({ 'top.txt': 'top', 'sub/inner.txt': 'inner' })
    fs.mkdirSync(path.join(ws, '.git'))
    const r = await vrunIn(path.join(ws, 'sub'), ['sh', '-c', 'cat ../top.txt inner.txt'])
    expect(r.stdout).toBe('topinner')
    const only = await vrunIn(path.join(ws, 'sub'), ['--workspace', '.', 'sh', '-c', 'ls -A'])
    expect(only.stdout).toBe('inner.txt\n')
  })
})

describe('a workspace that holds the agent\'s home', () => {
  it('never sends the home (its keys) and lets nothing come back into it', async () => {
    const ws = workspace({ 'code.txt': 'code' })
    const c = await startAgent({ home: path.join(ws, '.vgrid'), join: a.token })
    const key = fs.readFileSync(path.join(c.home, 'swarm.key'))
    const r = await c.vrun(['--on', b.peer, 'sh', '-c', 'ls -A; mkdir -p .vgrid; echo forged > .vgrid/swarm.key; echo out > out.txt'], { cwd: ws })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('code.txt\n')
    expect(fs.readFileSync(path.join(ws, 'out.txt'), 'utf8')).toBe('out\n')
    expect(fs.readFileSync(path.join(c.home, 'swarm.key'))).toEqual(key)

    // Run from the home itself, it refuses rather than send it.
    const inHome = await c.vrun(['--on', b.peer, 'true'], { cwd: c.home })
    expect(inHome.code).toBe(255)
    expect(inHome.stderr).toContain('is this agent\'s home')
    await c.stop()
  }, 60_000)
})

describe('outputs that cannot come back', () => {
  it('says the command ran and why, and the next run starts from a clean copy', async () => {
    const ws = workspace({ 'code.txt': 'code' })
    // Deeper than the tree format allows (256 levels).
    const deep = await vrunIn(ws, ['sh', '-c', 'mkdir -p $(printf "d/%.0s" $(seq 300)); exit 3'])
    expect(deep.code).toBe(255)
    expect(deep.stderr).toContain('the command exited with 3, but its outputs could not come back')
    expect(deep.stderr).toContain('nested deeper than 256 levels')
    // A path past the system's limit (4,096 bytes): named, not a refused message.
    const long = await vrunIn(ws, ['sh', '-c', 'rm -rf d; n=$(printf "%0250d" 7); for i in $(seq 17); do mkdir $n && cd $n; done'])
    expect(long.code).toBe(255)
    expect(long.stderr).toContain('longer than this system allows')
    expect(long.stderr).not.toContain('malformed')
    // Not stuck: the next run finds a copy that matches the workspace again.
    const next = await vrunIn(ws, ['sh', '-c', 'ls -A; echo ok > ok.txt'])
    expect(next.code, next.stderr).toBe(0)
    expect(next.stdout).toBe('code.txt\n')
    expect(fs.readFileSync(path.join(ws, 'ok.txt'), 'utf8')).toBe('ok\n')
  }, 60_000)
})

describe('what a sync leaves out', () => {
  it('is told to the user both ways, not only in the agents\' logs', async () => {
    const ws = workspace({ 'code.txt': 'code', 'keep.txt': 'keep' })
    spawnSync('mkfifo', [path.join(ws, 'here.fifo')])
    const r = await vrunIn(ws, ['sh', '-c', 'mkfifo there.fifo; rm keep.txt; mkfifo keep.txt; echo out > out.txt'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/vrun: not synced: "here\.fifo": a fifo cannot be synced/)
    expect(r.stderr).toMatch(/vrun: did not bring back "there\.fifo": a fifo cannot be synced/)
    expect(fs.readFileSync(path.join(ws, 'out.txt'), 'utf8')).toBe('out\n')
    // What the command turned into something that cannot travel is not a deletion: kept here.
    expect(r.stderr).toMatch(/vrun: did not bring back "keep\.txt": a fifo cannot be synced/)
    expect(fs.readFileSync(path.join(ws, 'keep.txt'), 'utf8')).toBe('keep')
    // And the copy is made to match again before the next run.
    const next = await vrunIn(ws, ['cat', 'keep.txt'])
    expect(next.stdout).toBe('keep')
  }, 60_000)
})

describe('vrun in a pipeline whose reader stops early', () => {
  it('ends the command\'s output as a local pipe would, and still brings its files back', async () => {
    const ws = workspace({ 'code.txt': 'code' })
    // As locally: seq dies of SIGPIPE, the script goes on and writes its second file.
    const script = `VGRID_HOME='${a.home}' '${process.execPath}' '${BIN.vrun}' --on ${b.peer} sh -c 'echo x > first.txt; seq 1 5000000; echo y > second.txt' | head -1; echo "vrun exited \${PIPESTATUS[0]}" >&2`
    const r = spawnSync('bash', ['-c', script], { cwd: ws, encoding: 'utf8', timeout: 60_000 })
    expect(r.stdout).toBe('1\n')
    expect(r.stderr).toContain('vrun exited 0')
    expect(fs.readFileSync(path.join(ws, 'first.txt'), 'utf8')).toBe('x\n')
    expect(fs.readFileSync(path.join(ws, 'second.txt'), 'utf8')).toBe('y\n')
  }, 60_000)
})

describe('a copy that changed on the executor between runs', () => {
  /** B's copy of `ws`: the one directory under B's workspaces/ that holds its marker file. */
  function copyOf (marker: string): string {
    const root = path.join(b.home, 'workspaces')
    const found = fs.readdirSync(root).flatMap((k) => fs.readdirSync(path.join(root, k), { withFileTypes: true })
      .filter((d) => d.isDirectory() && fs.existsSync(path.join(root, k, d.name, marker)))
      .map((d) => path.join(root, k, d.name)))
    expect(found).toHaveLength(1)
    return found[0]!
  }

  it('is put back to the submitter\'s files before the next command, never writing through a planted link', async () => {
    const marker = `marker-${randomBytes(6).toString('hex')}`
    const files = {
      'same-size.txt': 'alpha\n',
      'other-size.txt': 'bravo\n',
      'gone.txt': 'charlie\n',
      'linked.txt': 'delta\n',
      'kept-mtime.txt': 'echo\n',
      'sub/inner.txt': 'foxtrot\n',
      [marker]: ''
    }
    const ws = workspace(files)
    const first = await vrunIn(ws, ['true'])
    expect(first.code, first.stderr).toBe(0)
    const copy = copyOf(marker)

    // What a process left behind by a guest could do to the copy meanwhile.
    const outside = tempDir('vgrid-sentinel-')
    fs.writeFileSync(path.join(outside, 'secret'), 'sentinel\n')
    fs.writeFileSync(path.join(outside, 'inner.txt'), 'sentinel\n')
    fs.writeFileSync(path.join(copy, 'same-size.txt'), 'ALPHA\n')
    fs.writeFileSync(path.join(copy, 'other-size.txt'), 'bravo, tampered with\n')
    fs.writeFileSync(path.join(copy, 'stray.txt'), 'planted\n')
    fs.rmSync(path.join(copy, 'gone.txt'))
    fs.rmSync(path.join(copy, 'linked.txt'))
    fs.symlinkSync(path.join(outside, 'secret'), path.join(copy, 'linked.txt'))
    // same size, and the mtime put back as it was: only its ctime tells
    const st = fs.statSync(path.join(copy, 'kept-mtime.txt'))
    fs.writeFileSync(path.join(copy, 'kept-mtime.txt'), 'ECHO\n')
    fs.utimesSync(path.join(copy, 'kept-mtime.txt'), st.atime, st.mtime)
    fs.rmSync(path.join(copy, 'sub'), { recursive: true })
    fs.symlinkSync(outside, path.join(copy, 'sub'))

    const r = await vrunIn(ws, ['sh', '-c', `cat same-size.txt other-size.txt gone.txt linked.txt kept-mtime.txt sub/inner.txt; ls -A | grep -v ${marker}; test -L linked.txt || test -L sub || echo no-links`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('alpha\nbravo\ncharlie\ndelta\necho\nfoxtrot\n' +
      ['gone.txt', 'kept-mtime.txt', 'linked.txt', 'other-size.txt', 'same-size.txt', 'sub'].join('\n') + '\nno-links\n')
    expect(r.stderr).toMatch(/the workspace copy on this member had changed since the last run/)
    // Nothing written outside the copy, nothing planted came back, the workspace as it was.
    expect(fs.readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('sentinel\n')
    expect(fs.readFileSync(path.join(outside, 'inner.txt'), 'utf8')).toBe('sentinel\n')
    expect(fs.readdirSync(outside).sort()).toEqual(['inner.txt', 'secret'])
    expect(fs.existsSync(path.join(ws, 'stray.txt'))).toBe(false)
    for (const [rel, content] of Object.entries(files)) expect(fs.readFileSync(path.join(ws, rel), 'utf8')).toBe(content)

    // And a run after that finds nothing to put back.
    const again = await vrunIn(ws, ['cat', 'same-size.txt'])
    expect(again.stdout).toBe('alpha\n')
    expect(again.stderr).not.toMatch(/had changed since the last run/)
  }, 60_000)
})

describe('a workspace watched between runs (scan-watch.ts)', () => {
  /** What the last scan of `ws` in A's log says it took unread. */
  function unreadInLastScan (ws: string): number {
    const lines = a.output().split('\n').filter((l) => l.includes(`scanned ${ws}:`))
    const m = /, (\d+) directories unread/.exec(lines[lines.length - 1] ?? '')
    if (m === null) throw new Error(`no watched scan of ${ws} in A's log`)
    return Number(m[1])
  }

  it('sees the smallest edit here and the smallest write into the copy there', async () => {
    const marker = `marker-${randomBytes(6).toString('hex')}`
    // (past SMALL_TREE_ENTRIES: a smaller tree is read whole, not watched)
    const fill = Object.fromEntries(Array.from({ length: SMALL_TREE_ENTRIES }, (_, i) => [`fill/f${i}.txt`, `${i}\n`]))
    const ws = workspace({ 'a/b/c/deep.txt': 'one\n', 'a/top.txt': 'top\n', [marker]: '', ...fill })
    expect((await vrunIn(ws, ['true'])).code).toBe(0)
    expect((await vrunIn(ws, ['true'])).code).toBe(0)
    // the root, a, a/b, a/b/c, fill: nothing happened in them since the first scan
    expect(unreadInLastScan(ws)).toBe(5)

    /** An edit that keeps the size and the mtime. */
    const rewrite = (file: string, content: string): void => {
      const st = fs.statSync(file)
      fs.writeFileSync(file, content)
      fs.utimesSync(file, st.atime, st.mtime)
    }
    const deep = path.join(ws, 'a/b/c/deep.txt')
    rewrite(deep, 'two\n')
    const edited = await vrunIn(ws, ['cat', 'a/b/c/deep.txt'])
    expect(edited.stdout).toBe('two\n')
    // only a/b/c was read again
    expect(unreadInLastScan(ws)).toBe(4)

    fs.mkdirSync(path.join(ws, 'x/y'), { recursive: true })
    fs.writeFileSync(path.join(ws, 'x/y/new.txt'), 'new\n')
    expect((await vrunIn(ws, ['cat', 'x/y/new.txt'])).stdout).toBe('new\n')

    // The same kind of write into B's copy, after a run whose check found it whole: the
    // check before the next run sees it, and puts the file back.
    expect((await vrunIn(ws, ['true'])).code).toBe(0)
    expect(b.output()).toMatch(/checked \S+ in \d+ ms \(nothing happened in it since the last check\)/)
    const root = path.join(b.home, 'workspaces')
    const copy = fs.readdirSync(root).flatMap((k) => fs.readdirSync(path.join(root, k)).map((s) => path.join(root, k, s)))
      .find((d) => fs.existsSync(path.join(d, marker)))!
    rewrite(path.join(copy, 'a/b/c/deep.txt'), 'bad\n')
    const back = await vrunIn(ws, ['cat', 'a/b/c/deep.txt'])
    expect(back.stdout).toBe('two\n')
    expect(back.stderr).toMatch(/had changed since the last run/)
    expect(fs.readFileSync(deep, 'utf8')).toBe('two\n')
  }, 60_000)
})
