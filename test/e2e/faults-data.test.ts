/**
 * Faults in what agents keep on disk, through the real binaries: an executor's chunk store
 * damaged between two runs (bytes flipped, a pack cut short) and the task journal's last line
 * torn. Each is done by hand while the agent is stopped, as a crash or a bad disk would leave
 * it; the next run must get exactly the submitter's files, the owner must find the repair in
 * the agent's log and the user the cost of it in a notice. A run pinned to a member that has
 * left waits for it, saying so.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { startAgent, startGrid, stopAll, startCli, runCli, peersOf, waitFor, tempDir, type AgentProc } from '../helpers/procs.js'
import { INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES } from '../../src/fs-sync/pack.js'
import type { TaskRecord } from '../../src/agent/tasks/types.js'

let a: AgentProc
let b: AgentProc

beforeAll(async () => { [a, b] = await startGrid(2) }, 60_000)

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
afterAll(async () => { await stopAll() })

/**
 * A workspace of a few chunks' worth of random bytes, and what `sha256sum` prints of it. Its
 * big file is there twice: the executor's store keeps only chunks that more than one file
 * uses (the others live in the copy alone), and these tests damage the store.
 */
function workspace (): { dir: string, sums: string } {
  const dir = tempDir('vgrid-faults-ws-')
  const big = crypto.randomBytes(768 * 1024)
  const files: Record<string, Buffer> = {
    'big.bin': big,
    'big-again.bin': big,
    'sub/small.txt': Buffer.from(`small ${crypto.randomBytes(8).toString('hex')}\n`)
  }
  let sums = ''
  for (const [rel, data] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
    fs.writeFileSync(path.join(dir, rel), data)
    sums += `${crypto.createHash('sha256').update(data).digest('hex')}  ${rel}\n`
  }
  return { dir, sums }
}

const sumOnB = async (ws: string): Promise<Awaited<ReturnType<AgentProc['vrun']>>> =>
  await a.vrun(['--on', b.peer, 'sha256sum', 'big.bin', 'big-again.bin', 'sub/small.txt'], { cwd: ws, timeoutMs: 60_000 })

/** The packs of b's store: data file, and its index entries (offset, length). */
function packsOfB (): Array<{ dat: string, blobs: Array<{ offset: number, length: number }> }> {
  const dir = path.join(b.home, 'store')
  return fs.readdirSync(dir).filter((n) => /^pack-\d+\.dat$/.test(n)).sort().map((n) => {
    const idx = fs.readFileSync(path.join(dir, n.replace(/\.dat$/, '.idx')))
    const blobs: Array<{ offset: number, length: number }> = []
    for (let p = INDEX_HEADER_BYTES; p + INDEX_ENTRY_BYTES <= idx.length; p += INDEX_ENTRY_BYTES) {
      blobs.push({ offset: idx.readUInt32LE(p + 32), length: idx.readUInt32LE(p + 36) })
    }
    return { dat: path.join(dir, n), blobs }
  })
}

/** Stops b, does `damage` to its home, starts it again on the same home and waits until both see each other. */
async function restartB (damage: () => void): Promise<void> {
  await b.stop('SIGTERM')
  damage()
  b = await startAgent({ home: b.home })
  await waitFor(async () => (await peersOf(a)).some((p) => p.peer === b.peer) && (await peersOf(b)).some((p) => p.peer === a.peer),
    'the restarted member and the other to see each other', 20_000, 100)
}

/**
 * The copies of the workspaces b ran in: gone, the files of the next run can only come from
 * the store (or the submitter), which is what these tests are about.
 */
const dropCopies = (): void => { fs.rmSync(path.join(b.home, 'workspaces'), { recursive: true, force: true }) }

describe('a damaged chunk store on the executor', () => {
  it('with bytes flipped in every blob: the next run gets the right files, the owner and the user are told', async () => {
    const { dir: ws, sums } = workspace()
    const first = await sumOnB(ws)
    expect(first.code, first.stderr).toBe(0)
    expect(first.stdout).toBe(sums)

    let flipped = 0
    await restartB(() => {
      for (const { dat, blobs } of packsOfB()) {
        const bytes = fs.readFileSync(dat)
        for (const blob of blobs) {
          if (blob.length === 0) continue
          bytes[blob.offset + Math.floor(blob.length / 2)]! ^= 0x20
          flipped++
        }
        fs.writeFileSync(dat, bytes)
      }
      dropCopies()
    })
    expect(flipped).toBeGreaterThan(2)

    const second = await sumOnB(ws)
    expect(second.code, second.stderr).toBe(0)
    expect(second.stdout).toBe(sums)
    expect(second.stderr).toMatch(/vrun: the chunk store on this member had lost \d+ pieces? of your files \(its copy in pack 1 was corrupt \(its bytes do not match its hash\)\): sent again from your workspace/)
    expect(b.output()).toMatch(/vgrid:store warn dropping blob [0-9a-f]{64} of pack 1: its bytes do not match its hash; it is fetched again/)
  })

  it('with a pack cut short: the repair is logged at start, and the next run gets the right files', async () => {
    const { dir: ws, sums } = workspace()
    const first = await sumOnB(ws)
    expect(first.code, first.stderr).toBe(0)

    let pack = 0
    let half = 0
    let lost = 0
    await restartB(() => {
      // the newest pack, cut in the middle of its second blob: a crash while it was written
      const { dat, blobs } = packsOfB().at(-1)!
      expect(blobs.length).toBeGreaterThan(2)
      pack = Number(/pack-(\d+)\.dat$/.exec(dat)![1])
      half = Math.floor(blobs[1]!.length / 2)
      lost = blobs.length - 1
      fs.truncateSync(dat, blobs[1]!.offset + half)
      dropCopies()
    })
    // what is left of the second blob goes, and with it the index entries of the blobs after the first
    expect(b.output()).toContain(`vgrid:store warn pack ${pack} of ${path.join(b.home, 'store')} had a torn tail (a crash or a full disk while it was written?): ` +
      `cut ${half} data bytes and ${lost * INDEX_ENTRY_BYTES} index bytes, losing ${lost} blobs whose data was gone; what it held is fetched again when a run needs it`)

    const second = await sumOnB(ws)
    expect(second.code, second.stderr).toBe(0)
    expect(second.stdout).toBe(sums)
    expect(second.stderr).toMatch(new RegExp(`vrun: the chunk store on this member had lost \\d+ pieces? of your files \\(pack ${pack} had a torn tail: \\d+ bytes were cut when the agent started\\)`))
  })
})

describe('a member that left', () => {
  it('is waited for by a run pinned to it, which says who left and when, then runs once it is back', async () => {
    await b.stop('SIGTERM')
    await waitFor(async () => !(await peersOf(a)).some((p) => p.peer === b.peer), 'the stopped member to leave the view', 15_000, 100)
    const run = startCli('vrun', ['--no-sync', '--on', b.peer, 'echo', 'back'], { home: a.home, cwd: a.workspace, env: { VGRID_VERBOSE: '1' }, timeoutMs: 60_000 })
    const said = await waitFor(() => /vrun: waiting: .*\n/.exec(run.stderr())?.[0], 'vrun to say why it waits', 15_000, 50)
    expect(said).toMatch(new RegExp(`vrun: waiting: ${escape(b.host)} \\(…${b.peer.slice(-6)}\\) left the grid \\d+ s ago; waiting for it to come back`))
    // a name no member ever had is still refused at once
    const unknown = await a.vrun(['--no-sync', '--on', 'no-such-member', 'true'])
    expect(unknown.code).not.toBe(0)
    expect(unknown.stderr).toMatch(/no member of the grid is called no-such-member/)

    await restartB(() => {})
    const r = await run.done
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('back\n')
  })
})

describe('the task journal with a torn last line', () => {
  it('is read back with every other task, the torn one reported in the agent log, and the agent goes on', async () => {
    const j = await startAgent()
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const r = await runCli('vbatch', ['--no-sync', 'sh', '-c', `echo task ${i}`], { home: j.home, cwd: j.workspace, timeoutMs: 30_000 })
      expect(r.code, r.stderr).toBe(0)
      ids.push(r.stdout.trim())
    }
    for (const id of ids) {
      const w = await runCli('vgrid', ['task', 'wait', id], { home: j.home, timeoutMs: 30_000 })
      expect(w.code, w.stderr).toBe(0)
    }
    await j.stop('SIGTERM')

    const file = path.join(j.home, 'tasks', 'records.jsonl')
    const text = fs.readFileSync(file, 'utf8')
    const last = text.slice(text.lastIndexOf('\n', text.length - 2) + 1)
    const torn = (JSON.parse(last) as { record: TaskRecord }).record.id
    fs.truncateSync(file, Buffer.byteLength(text) - Math.floor(Buffer.byteLength(last) / 2))

    const j2 = await startAgent({ home: j.home })
    await waitFor(() => j2.output().includes('was torn'), 'the agent to report the torn line', 10_000, 50)
    expect(j2.output()).toMatch(new RegExp(`vgrid:tasks warn the last line of ${escape(file)} was torn \\(the agent stopped while writing it\\): skipped its \\d+ bytes; task ${torn} (keeps the state of its previous line|was recorded only there and is lost)`))
    const listed = await j2.vgrid(['task', 'list', '--all', '--json'])
    expect(listed.code, listed.stderr).toBe(0)
    const tasks = (JSON.parse(listed.stdout) as { tasks: TaskRecord[] }).tasks
    for (const id of ids.filter((id) => id !== torn)) {
      expect(tasks.find((t) => t.id === id), `task ${id}`).toMatchObject({ state: 'succeeded' })
    }
    // and it still takes work
    const again = await runCli('vrun', ['--no-sync', 'echo', 'alive'], { home: j.home, cwd: j.workspace, timeoutMs: 30_000 })
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toBe('alive\n')
    expect(j2.output()).not.toMatch(/uncaught|unhandled/i)
  })
})
