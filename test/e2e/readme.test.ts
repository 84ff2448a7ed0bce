/**
 * Every command example of the README, run as written against a real grid, so the README
 * cannot promise what the binaries do not do. Each example line (a line of a code block that
 * starts with vrun, vbatch, vgrid, curl…) has an entry below: how it runs here, or the test
 * that runs it, or why neither (the test and bench commands themselves). A new example
 * without an entry, or an entry whose example is gone, fails the first test.
 *
 * What runs here changes only what this machine cannot have, each change written beside its
 * line: a member's name (every member here is called the same), sizes past its 2 cores and
 * 24 GiB, paths that only exist on a lab's machine, addresses other than loopback.
 */
import fs from 'node:fs'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startAgent, stopAll, tempDir, waitFor, collect, BIN, ROOT, type AgentProc, type CliResult } from '../helpers/procs.js'
import { fakeGpuPath } from '../helpers/fake-gpus.js'

/** The example lines of the README: commands in its code blocks, comments cut, `$ ` prompts dropped. */
export function readmeExamples (md: string): string[] {
  let inBlock = false
  const out: string[] = []
  const lines = md.split('\n')
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!
    if (line.startsWith('```')) { inBlock = !inBlock; continue }
    if (!inBlock || line.startsWith(' ')) continue
    // a command continued with a backslash is one example
    while (line.endsWith('\\') && i + 1 < lines.length) line = `${line}\n${lines[++i]!.replace(/\s{2,}#.*$/, '')}`
    const l = line.replace(/^\$ /, '').replace(/\s{2,}#.*$/, '').trimEnd()
    if (/^(echo data \| )?(npx )?((vrun|vbatch|vgrid|curl|npm|node)\b|[A-Z_]+=)/.test(l) && !/^vgrid agent \d/.test(l)) out.push(l)
  }
  return out
}

const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')

/** Where an example runs elsewhere: a test file and the title of the test that runs it. */
interface By { by: string, test: string }
/** Not a command of vgrid: why no test runs it. */
interface Exempt { exempt: string }
/** Runs here: in bash, in the workspace, vrun/vbatch/vgrid on PATH, this grid's agent A as VGRID_HOME. */
interface Here {
  /** [from, to] replacements, each for a reason the line's comment gives; `$NAME` in `to` is a shell variable (vars()), `{{NAME}}` its value written in. */
  sub?: Array<[string | RegExp, string]>
  /** On which agent's home (default A). */
  on?: 'a' | 'c'
  input?: string
  /** Where it runs (default: the workspace). */
  cwd?: () => string
  check: (r: CliResult) => void
}
/** An agent started with the example's options (plus --listen on loopback), then stopped. */
interface AgentStart { agent: true, sub?: Array<[string | RegExp, string]>, env?: () => Record<string, string>, home?: () => string }

type How = By | Exempt | Here | AgentStart

let a: AgentProc
let b: AgentProc
/** An agent the `vgrid agent set|stop` examples change and stop. */
let c: AgentProc
let ws: string
let bin: string
let fakeHome: string
/** Task ids of the runs above, for the examples that name one. */
const ids = new Map<string, string>()

const ok = (out: RegExp | string) => (r: CliResult): void => {
  expect(r.code, r.stderr).toBe(0)
  if (typeof out === 'string') expect(r.stdout).toBe(out)
  else expect(r.stdout).toMatch(out)
}
const idOf = (r: CliResult): string => /^([0-9a-f]{16})$/m.exec(r.stdout)?.[1] ?? ''

const TASK_ID = /^[0-9a-f]{16}$/m
const SHRUNK_MEM: [string, string] = ['--mem 64G', '--mem 1G']

const HOW: Record<string, How> = {
  // The two commands of the README: what .ci/run runs, and what a user starts first.
  'npm install && npm start': { by: 'test/e2e/readme.test.ts', test: 'vgrid agent' },
  'npm test': { exempt: '.ci/run runs it' },
  'npm run test:heavy': { exempt: '.ci/run runs the heavy project' },
  'npm run test:all': { exempt: '.ci/run runs both projects' },
  'npm run bench': { exempt: 'the benchmarks: run by hand, their figures in the README' },
  'node dist/bench/run.js sync': { exempt: 'a benchmark' },
  'BENCH_SOAK_TASKS=3000 node dist/bench/run.js soak': { exempt: 'a benchmark' },
  'BENCH_SCALE_N=50,100 node dist/bench/run.js scale': { exempt: 'a benchmark' },
  'npm run sim': { exempt: 'the placement simulator, a benchmark' },
  'npx vrun uname -a': { sub: [['npx vrun', 'vrun']], check: ok(/^Linux /) },
  'npx vgrid peers': { sub: [['npx vgrid', 'vgrid']], check: ok(/PEER/) },

  // vgrid agent: each started with its options, then stopped
  'vgrid agent': { agent: true },
  'vgrid agent --join-file ~/grid.token': { agent: true, sub: [['~/grid.token', '$JOIN_FILE']] },
  // not on a command line: from the environment and stdin, as join.test.ts runs them
  'VGRID_JOIN_TOKEN=vgrid2.… vgrid agent': { by: 'test/e2e/join.test.ts', test: 'takes the token from --join-file, VGRID_JOIN_TOKEN and stdin' },
  'vgrid join-token | ssh lab-02 /home/you/vgrid/bin/vgrid.js agent --join -': { by: 'test/e2e/join.test.ts', test: 'takes the token from --join-file, VGRID_JOIN_TOKEN and stdin' },
  // the service: its unit written where systemd does not read it (installing one here would start it)
  'vgrid service install --join-file grid.token': { by: 'test/e2e/service.test.ts', test: 'writes a user unit' },
  'vgrid service install --print': { check: ok(/^ExecStart=.* agent$/m) },
  'vgrid service uninstall [--system]': { by: 'test/e2e/service.test.ts', test: 'writes a user unit' },
  'vgrid agent --peer /ip4/10.0.0.5/tcp/7321/p2p/12D3KooW…': { agent: true, sub: [[/\/ip4\/10\.0\.0\.5\S+/, '$ADDR']], home: () => homeWithKey() },
  'vgrid agent --cpus 8 --gpus 0,1 --mem 32G': { agent: true, sub: [['--cpus 8', '--cpus 2'], ['--mem 32G', '--mem 2G']], env: () => fakeGpuPath('NVIDIA A100-SXM4-80GB:81920,NVIDIA A100-SXM4-80GB:81920') },
  'vgrid agent --gpus none --pool cpu-boxes --label room=b12': { agent: true },
  'vgrid agent --listen /ip4/127.0.0.1/tcp/0': { agent: true },
  'vgrid agent --cache-size 50G': { agent: true },
  'vgrid agent --keep-results 2d': { agent: true },
  'vgrid agent --max-tasks 4 --nice 15': { agent: true },
  'vgrid agent --only-when-idle': { agent: true },
  'vgrid agent --accept-from 12D3KooWAb…,12D3KooWXy…': { agent: true, sub: [['12D3KooWAb…,12D3KooWXy…', '$A_PEER,$B_PEER']] },
  'vgrid agent --guest-net none': { agent: true },
  'vgrid agent --guest-share /data --guest-share /scratch:rw': { agent: true, sub: [['/data', '$SHARE/data'], ['/scratch', '$SHARE/scratch']] },
  // a user of that name is not made on a test machine: the default one, named
  'vgrid agent --guest-user vgrid-guest': { agent: true, sub: [['vgrid-guest', 'nobody']] },
  'vgrid agent --isolation none': { agent: true },
  // a port of its own, not 8080, which may be taken here
  'vgrid agent --http 127.0.0.1:8080': { agent: true, sub: [['127.0.0.1:8080', '127.0.0.1:0']] },
  'vgrid agent --http off': { agent: true },
  // any address but loopback is out of bounds in tests: TLS on loopback is tested there
  'vgrid agent --http 0.0.0.0:8443 --http-cert cert.pem --http-key key.pem': { by: 'test/e2e/http-api.test.ts', test: 'TLS' },
  'vgrid agent set --cpus 2 --max-tasks 1': { on: 'c', check: ok(/lends 2 of/) },
  'vgrid agent set --pause': { on: 'c', check: ok(/paused/) },
  'vgrid agent set --resume': { on: 'c', check: ok(/lends/) },
  'vgrid agent stop': { by: 'test/e2e/drain.test.ts', test: 'vgrid agent stop' },
  'vgrid agent stop --drain': { by: 'test/e2e/drain.test.ts', test: 'drain' },

  // vrun
  'vrun python3 train.py --epochs 1': { check: ok("train ['--epochs', '1']\n") },
  // every member here has the same hostname: B by a prefix of its peer id, which --on takes
  // too; the fake nvidia-smi answers only queries
  'vrun --on lab-ws2 nvidia-smi': { sub: [['lab-ws2', '$B_PREFIX'], ['nvidia-smi', 'nvidia-smi --query-gpu=name --format=csv']], check: ok(/A100/) },
  // 2 cores here
  'vrun --cpus 4 make -j4': { sub: [['--cpus 4', '--cpus 2']], check: ok(/built/) },
  'vrun --gpus 1 --gpu-model a100 ./train.sh': { check: ok(/^train on [01]\n$/) },
  'vrun -P gpu-a100 ./train.sh': { check: ok(/^train on [01]\n$/) },
  'vrun -P gpu-a100-2 ./train.sh': { check: ok(/^train on (0,1|1,0)\n$/) },
  'vrun --gpus 2 --gpu-mem 40G --mem 64G ./train.sh': { sub: [SHRUNK_MEM], check: ok(/^train on (0,1|1,0)\n$/) },
  'vrun -P lab make': { check: ok(/built/) },
  'vrun -P lab -P gpu-1 --label room=b12 ./train.sh': { check: ok(/^train on [01]\n$/) },
  'vrun -e WANDB_MODE=offline -e HOME python3 x.py': { check: (r) => { ok(/^offline /)(r); expect(r.stdout.trim().split(' ')[1]).toBe(fakeHome) } },
  // its terminal side (prompt, line editing, window size) is tty.test.ts's
  'vrun bash': { input: 'echo $((6 * 7))\n', check: ok('42\n') },
  'echo data | vrun wc -c': { check: ok('5\n') },
  'vrun --tty no top -b -n1': { check: ok(/load average/) },
  'vrun --workspace ~/proj make': { cwd: () => path.join(fakeHome, 'proj'), check: ok(/proj built/) },
  'vrun --no-sync hostname': { check: ok(/\S/) },
  'vrun -q python3 train.py': { check: (r) => { ok('train []\n')(r); expect(r.stderr).toBe('') } },
  // a program of that name, from the workspace: the guests' PATH has none
  'vrun -- --weird-name': { sub: [['vrun --', 'vrun -e PATH=$WS/bin:/usr/bin:/bin --']], check: ok('weird\n') },
  "vrun sh -c 'echo $#' x $(seq 90000)": { check: ok('90000\n') },

  // vbatch
  'vbatch python3 train.py': { check: (r) => { ok(TASK_ID)(r); ids.set('train.py', idOf(r)) } },
  'vbatch -f make test': { check: ok(/tested/) },
  'vbatch --name process sh process.sh': { check: ok(TASK_ID) },
  'vbatch --name train --after-success process sh train.sh': { check: ok(TASK_ID) },
  'vbatch --after-fail train sh alert.sh': { check: (r) => { ok(TASK_ID)(r); ids.set('alert', idOf(r)) } },
  'vbatch -N 8 sh shard.sh': { check: (r) => { expect(r.code).toBe(0); expect(r.stdout.match(/^[0-9a-f]{16}$/gm)).toHaveLength(8) } },
  // torchrun is not installed here: a script of that name in the workspace, on the guests' PATH
  'vbatch -N 4 --gang torchrun train.py': { sub: [['torchrun', '-e PATH=$WS/bin:/usr/bin:/bin torchrun']], check: (r) => { expect(r.code, r.stderr).toBe(0); ids.set('gang', idOf(r)) } },
  'vbatch --retries 2 --timeout 2h ./long.sh': { check: ok(TASK_ID) },
  'vbatch ./pipeline.sh': { check: (r) => { ok(TASK_ID)(r); ids.set('pipeline', idOf(r)) } },
  'vbatch bash -c \'for f in *.csv; do vbatch python3 process_file.py "$f"; done\'': { check: (r) => { ok(TASK_ID)(r); ids.set('csv', idOf(r)) } },
  'vbatch --name train -N 4 ./train.sh': { sub: [['--name train', '--name train4']], check: ok(TASK_ID) },

  // vgrid task: synopses run with and without their options
  'vgrid task list [--all] [--json]': { sub: [['vgrid task list [--all] [--json]', 'vgrid task list && vgrid task list --all && vgrid task list --json']], check: ok(/process/) },
  'vgrid task show ID [--json]': { sub: [['ID [--json]', '$ID && vgrid task show $ID --json']], check: ok(/succeeded/) },
  'vgrid task log ID [-f] [--stderr-only]': { sub: [['ID [-f] [--stderr-only]', '$ID && vgrid task log -f $ID && vgrid task log $ID --stderr-only']], check: ok(/^train \[\]\ntrain \[\]\n$/) },
  'vgrid task cancel ID': { sub: [['ID', '$SLEEPER']], check: ok(/cancelling/) },
  'vgrid task wait ID': { sub: [['ID', '$ID']], check: ok('') },
  'vgrid task wait train[0] && vgrid task log train[0]': { sub: [[/train\[0\]/g, 'train4[0]']], check: ok(/^train on/) },
  'vgrid task wait train': { sub: [['train', 'train4']], check: ok('') },
  'vgrid task cancel train': { sub: [['train', 'train4']], check: (r) => { expect(r.stderr).not.toMatch(/no task/) } },

  // listings
  'vgrid peers': { check: ok(/A100/) },
  'vgrid peers --json': { check: (r) => { ok(/"peers"/)(r); expect(JSON.parse(r.stdout).peers).toHaveLength(2) } },
  'vgrid status': { check: ok(/peer id/) },
  'vgrid status --json': { check: (r) => { ok(/"status"/)(r); expect(JSON.parse(r.stdout).status.peer).toBe(a.peer) } },
  'vgrid join-token': { check: ok(/^vgrid2\./) },
  // a fresh HOME has no fish directory yet: made first; then the file written is read back
  'vgrid completion fish > ~/.config/fish/completions/vgrid.fish': {
    sub: [['vgrid completion fish', 'mkdir -p ~/.config/fish/completions && vgrid completion fish'], [/$/, ' && grep -c "complete -c vgrid" ~/.config/fish/completions/vgrid.fish']],
    check: ok(/^[1-9]\d*\n$/)
  },

  // the REST API, on A's address (the default port may be another agent's here)
  'TOKEN=$(cat ~/.vgrid/http.token)': { sub: [['~/.vgrid', '$VGRID_HOME']], check: ok('') },
  'API=http://127.0.0.1:7322/api/v1': { sub: [['http://127.0.0.1:7322', '$A_HTTP']], check: ok('') },
  'curl -H "Authorization: Bearer $TOKEN" $API/peers': { check: ok(/"peers"/) },
  'H="Authorization: Bearer $TOKEN"': { check: ok('') },
  'curl -H "$H" $API/peers': { check: ok(/"peers"/) },
  'curl -H "$H" "$API/tasks?state=running,queued"': { check: ok(/"tasks"/) },
  'curl -H "$H" "$API/tasks?name=train&submitter=alice@ws-1"': { sub: [['alice@ws-1', '$SUBMITTER']], check: ok(/"name":"train"/) },
  'curl -H "$H" $API/tasks/3f2a9c01': { sub: [['3f2a9c01', '$ID']], check: ok(/"task"/) },
  'curl -H "$H" $API/tasks/3f2a9c01/log': { sub: [['3f2a9c01', '$ID']], check: ok('train []\n') },
  'curl -N -H "$H" "$API/tasks/3f2a9c01/log?follow=1"': { sub: [['3f2a9c01', '$ID']], check: ok(/event: end/) },
  'curl -H "$H" -H \'Content-Type: application/json\' \\\n     -d \'{"argv": ["python", "train.py"], "gpus": 1, "name": "train", "workspace": "/home/alice/proj"}\' \\\n     $API/tasks': { sub: [['/home/alice/proj', '{{WS}}']], check: ok(/"id"/) },
  'curl -X POST -H "$H" $API/tasks/3f2a9c01/cancel': { sub: [['3f2a9c01', '$SLEEPER2']], check: ok(/"task":\{"id":"[0-9a-f]{16}"/) },
  'curl -N -H "$H" $API/events': { sub: [['curl -N', 'curl -N -m 2']], check: (r) => { expect(r.stdout).toMatch(/event: hello/) } }
}

const GPUS = 'NVIDIA A100-SXM4-80GB:81920,NVIDIA A100-SXM4-80GB:81920'

/** What the examples find in the workspace, as a user's project would have it. */
const FILES: Record<string, string> = {
  'train.py': 'import sys\nprint("train", sys.argv[1:])\n',
  'x.py': 'import os\nprint(os.environ.get("WANDB_MODE"), os.environ.get("HOME"))\n',
  'train.sh': '#!/bin/sh\necho "train on $CUDA_VISIBLE_DEVICES"\n',
  Makefile: 'all:\n\t@echo built\ntest:\n\t@echo tested\n',
  'process.sh': 'echo processed > processed.txt\n',
  'alert.sh': 'echo "train failed" > alert.txt\n',
  'shard.sh': 'echo "shard $VGRID_SHARD_INDEX of $VGRID_SHARD_COUNT"\n',
  'long.sh': '#!/bin/sh\necho long\n',
  'pipeline.sh': '#!/bin/sh\nset -e\nvbatch --name step1 sh -c "echo one > one.txt"\nvgrid task wait step1\nvrun cat one.txt > two.txt\n',
  'process_file.py': 'import sys\nopen(sys.argv[1] + ".out", "w").write("done\\n")\n',
  'a.csv': '1\n',
  'b.csv': '2\n',
  'bin/--weird-name': '#!/bin/sh\necho weird\n',
  'bin/torchrun': '#!/bin/sh\necho "torchrun $VGRID_SHARD_INDEX of $VGRID_SHARD_COUNT: $*"\n'
}

function homeWithKey (): string {
  const home = tempDir('vgrid-readme-peer-')
  fs.copyFileSync(path.join(a.home, 'swarm.key'), path.join(home, 'swarm.key'))
  fs.chmodSync(home, 0o700)
  return home
}

/** What `$NAME` in a substituted line stands for. */
function vars (): Record<string, string> {
  return {
    JOIN: a.token,
    JOIN_FILE: joinFile,
    ADDR: addrOf(a),
    A_PEER: a.peer,
    B_PEER: b.peer,
    B_PREFIX: b.peer.slice(0, 20),
    SHARE: share,
    WS: ws,
    A_HTTP: a.http ?? '',
    SUBMITTER: `${process.env.USER ?? 'root'}@${a.host}`,
    ID: ids.get('train.py') ?? '',
    SLEEPER: ids.get('sleeper') ?? '',
    SLEEPER2: ids.get('sleeper2') ?? ''
  }
}

let share: string
let addr: string
/** A's token in a file only its owner reads, for --join-file. */
let joinFile: string
function addrOf (_x: AgentProc): string { return addr }

function substitute (line: string, subs: Array<[string | RegExp, string]> = []): string {
  let l = line
  for (const [from, to] of subs) l = typeof from === 'string' ? l.split(from).join(to) : l.replace(from, to)
  return l
}

/** Variable assignments of the examples so far: the lines after them run in the same shell. */
const prelude: string[] = []

async function runHere (line: string, how: Here): Promise<CliResult> {
  // {{NAME}}: a value written into the line itself (inside single quotes, say)
  const v = vars()
  const l = substitute(line, how.sub).replace(/\{\{([A-Z_]+)\}\}/g, (_m, k: string) => v[k] ?? '')
  const home = how.on === 'c' ? c.home : a.home
  const child = spawn('bash', ['-c', [...prelude, l].join('\n')], {
    cwd: how.cwd?.() ?? ws,
    env: { ...process.env, ...vars(), VGRID_HOME: home, HOME: fakeHome, USER: process.env.USER ?? 'root', PATH: `${bin}:${process.env.PATH ?? ''}` },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  const r = await collect(child, 120_000, how.input ?? '')
  if (/^[A-Z_]+=/.test(line)) prelude.push(l)
  return r
}

beforeAll(async () => {
  share = tempDir('vgrid-readme-share-')
  a = await startAgent()
  b = await startAgent({ join: a.token, args: ['--isolation', 'none', '--pool', 'lab', '--label', 'room=b12'], env: fakeGpuPath(GPUS) })
  c = await startAgent()
  await waitFor(async () => JSON.parse((await a.vgrid(['peers', '--json'])).stdout).peers.length === 2, 'B in the view of A', 30_000, 100)
  const st = JSON.parse((await a.vgrid(['status', '--json'])).stdout).status
  addr = (st.addrs as string[]).find((x) => x.includes('/127.0.0.1/'))!
  joinFile = path.join(tempDir('vgrid-readme-token-'), 'grid.token')
  fs.writeFileSync(joinFile, `${a.token}\n`, { mode: 0o600 })
  ws = a.workspace
  for (const [name, content] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(ws, name)), { recursive: true })
    fs.writeFileSync(path.join(ws, name), content, { mode: content.startsWith('#!') ? 0o755 : 0o644 })
  }
  fakeHome = tempDir('vgrid-readme-home-')
  fs.mkdirSync(path.join(fakeHome, 'proj'))
  fs.writeFileSync(path.join(fakeHome, 'proj', 'Makefile'), 'all:\n\t@echo proj built\n')
  bin = tempDir('vgrid-readme-bin-')
  for (const name of ['vrun', 'vbatch', 'vgrid'] as const) fs.symlinkSync(BIN[name], path.join(bin, name))
  // tasks for the examples that cancel one
  for (const k of ['sleeper', 'sleeper2']) {
    const r = await collect(spawn(process.execPath, [BIN.vbatch, '--cpus', '0', '--no-sync', 'sleep', '600'], { cwd: ws, env: { ...process.env, VGRID_HOME: a.home } }), 30_000, '')
    expect(r.code, r.stderr).toBe(0)
    ids.set(k, idOf(r))
  }
}, 120_000)

afterAll(async () => { await stopAll() })

const EXAMPLES = readmeExamples(README)

describe('the README\'s command examples', () => {
  it('each has an entry here (run here, run by a named test, or why not), and each entry an example', () => {
    const missing = EXAMPLES.filter((l) => HOW[l] === undefined)
    expect(missing, 'README examples nobody runs: add them to HOW').toEqual([])
    const stale = Object.keys(HOW).filter((l) => !EXAMPLES.includes(l))
    expect(stale, 'entries whose example left the README').toEqual([])
    for (const [line, how] of Object.entries(HOW)) {
      if (!('by' in how)) continue
      const file = path.join(ROOT, how.by)
      expect(fs.existsSync(file), `${line}: ${how.by}`).toBe(true)
      expect(fs.readFileSync(file, 'utf8'), `${line}: no test "${how.test}" in ${how.by}`).toContain(how.test)
    }
  })

  // In the README's order: the task examples find the tasks the vbatch examples made.
  for (const line of [...new Set(EXAMPLES)]) {
    const how = HOW[line]
    if (how === undefined || !('check' in how)) continue
    it(`runs: ${line}`, async () => {
      if (/\$ID|ID\b/.test(substitute(line, how.sub)) && ids.has('train.py')) {
        await runHere('vgrid task wait $ID', { check: () => {} })
      }
      const r = await runHere(line, how)
      how.check(r)
    }, 180_000)
  }

})

// Each its own agent, alone or joining A: a few at once (vitest's maxConcurrency), as they only wait.
describe.concurrent('the README\'s vgrid agent examples', () => {
  for (const line of [...new Set(EXAMPLES)]) {
    const how = HOW[line]
    if (how === undefined || !('agent' in how)) continue
    it(`starts: ${line}`, async ({ expect }) => {
      const v = vars()
      const argv = substitute(line, how.sub).replace(/\$([A-Z_]+)/g, (_m, k: string) => v[k] ?? '').split(/\s+/)
      expect(argv.slice(0, 2)).toEqual(['vgrid', 'agent'])
      const agent = await startAgent({
        args: argv.slice(2),
        ...(how.home !== undefined ? { home: how.home() } : {}),
        ...(how.env !== undefined ? { env: how.env() } : {}),
        defaultHttp: argv.includes('--http')
      })
      expect(agent.peer).toMatch(/^12D3KooW/)
      if (argv.includes('--join') || argv.includes('--join-file') || argv.includes('--peer')) {
        await waitFor(async () => JSON.parse((await agent.vgrid(['peers', '--json'])).stdout).peers.some((p: { peer: string }) => p.peer === a.peer), 'the grid of A', 30_000, 100)
      }
      expect((await agent.vgrid(['status'])).code).toBe(0)
      expect((await agent.stop()).code).toBe(0)
    }, 120_000)
  }
})
