/**
 * A floor under issue 5's placement figure, measured in the same run: starting `true` and
 * nothing else (no view, claims, streams or events), from four Node processes as large as the
 * grid's agents, alone and 50 at once spread over the four. No placement can beat this on
 * the same machine: it is what the starts alone cost.
 *
 *   node dist/bench/spawn-floor.js --child MIB   (a process that spawns on request)
 */
import { fork, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { median } from './stats.js'

const PROCESSES = 4
const CONCURRENT = 50
const ROUNDS = 4
const ALONE = 30

/** Time from spawn() to the child process existing ('spawn'), in ms. */
async function startOne (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const t0 = performance.now()
    const c = spawn('true', [], { stdio: 'pipe', detached: true })
    c.once('spawn', () => { resolve(performance.now() - t0) })
    c.once('error', reject)
  })
}

function child (mib: number): void {
  // As resident as an agent: fork() copies the page tables of what is resident.
  const ballast: Buffer[] = []
  for (let i = 0; i < mib; i++) ballast.push(Buffer.alloc(2 ** 20, 1))
  process.on('message', (m: { n: number }) => {
    void Promise.all(Array.from({ length: m.n }, startOne)).then((ms) => { process.send?.({ ms, ballast: ballast.length }) })
  })
  process.send?.({ ready: true })
}

/** Median start alone and under CONCURRENT at once, from processes of `rssMib` MiB. */
export async function spawnFloor (rssMib: number): Promise<{ alone: number, loaded: number }> {
  // a bare Node process is ~50 MiB resident; the ballast makes up the rest
  const pad = Math.max(0, Math.round(rssMib - 50))
  const kids = await Promise.all(Array.from({ length: PROCESSES }, async () => await new Promise<ReturnType<typeof fork>>((resolve, reject) => {
    const k = fork(fileURLToPath(import.meta.url), ['--child', String(pad)], { stdio: 'ignore' })
    k.once('message', () => { resolve(k) })
    k.once('error', reject)
  })))
  const ask = async (k: ReturnType<typeof fork>, n: number): Promise<number[]> => await new Promise((resolve) => {
    k.once('message', (m: { ms: number[] }) => { resolve(m.ms) })
    k.send({ n })
  })
  try {
    const alone: number[] = []
    for (let i = 0; i < ALONE; i++) alone.push(...await ask(kids[i % PROCESSES]!, 1))
    const loaded: number[] = []
    for (let r = 0; r < ROUNDS; r++) {
      const share = (i: number): number => Math.floor(CONCURRENT / PROCESSES) + (i < CONCURRENT % PROCESSES ? 1 : 0)
      loaded.push(...(await Promise.all(kids.map(async (k, i) => await ask(k, share(i))))).flat())
    }
    return { alone: median(alone), loaded: median(loaded) }
  } finally {
    for (const k of kids) k.kill()
  }
}

if (process.argv[2] === '--child') child(Number(process.argv[3]))
