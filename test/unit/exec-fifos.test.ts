import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { FifoMaker } from '../../src/exec/fifos.js'
import { defaultLauncher } from '../../src/exec/launcher.js'

const dirs: string[] = []
afterEach(() => { for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })

function maker (): { fifos: FifoMaker, dir: string } {
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fifo-test-')), 'fifos')
  dirs.push(path.dirname(dir))
  return { fifos: new FifoMaker(dir), dir }
}

/** One command's stdio from `fifos`: FIFOs of mode 0666; then released and closed, with the maker. */
async function expectFifosOf (fifos: FifoMaker): Promise<void> {
  const p = await fifos.stdio()
  expect(p.paths.every((n) => fs.statSync(n).isFIFO() && (fs.statSync(n).mode & 0o777) === 0o666)).toBe(true)
  p.release()
  for (const fd of [...p.child, p.stdin, p.stdout, p.stderr]) fs.closeSync(fd)
  fifos.close()
}

describe('FifoMaker', () => {
  it('keeps its FIFOs in a directory only this process may enter', async () => {
    const { fifos, dir } = maker()
    const p = await fifos.stdio()
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700)
    for (const n of fs.readdirSync(dir)) expect(fs.statSync(path.join(dir, n)).isFIFO()).toBe(true)
    p.release()
    for (const fd of [...p.child, p.stdin, p.stdout, p.stderr]) fs.closeSync(fd)
    fifos.close()
  })

  it('connects each pair of ends: what one end writes the other reads', async () => {
    const { fifos } = maker()
    const p = await fifos.stdio()
    fs.writeSync(p.stdin, 'to the command')
    const buf = Buffer.alloc(64)
    expect(buf.subarray(0, fs.readSync(p.child[0], buf)).toString()).toBe('to the command')
    fs.writeSync(p.child[1], 'out')
    expect(buf.subarray(0, fs.readSync(p.stdout, buf)).toString()).toBe('out')
    fs.writeSync(p.child[2], 'err')
    expect(buf.subarray(0, fs.readSync(p.stderr, buf)).toString()).toBe('err')
    // our end closed: the command reads EOF
    fs.closeSync(p.stdin)
    expect(fs.readSync(p.child[0], buf)).toBe(0)
    p.release()
    for (const fd of [...p.child, p.stdout, p.stderr]) fs.closeSync(fd)
    fifos.close()
  })

  it('removes the names of a command\'s FIFOs when it is released, and its stock when closed', async () => {
    const { fifos, dir } = maker()
    const p = await fifos.stdio()
    const before = new Set(fs.readdirSync(dir))
    p.release()
    const after = new Set(fs.readdirSync(dir))
    expect([...before].filter((n) => !after.has(n))).toHaveLength(3)
    for (const fd of [...p.child, p.stdin, p.stdout, p.stderr]) fs.closeSync(fd)
    fifos.close()
    expect(fs.readdirSync(dir)).toEqual([])
  })

  it('takes many commands\' pipes from one mkfifo call at a time, refilling as it goes', async () => {
    const { fifos } = maker()
    const all = []
    for (let i = 0; i < 100; i++) all.push(await fifos.stdio())
    for (const p of all) {
      p.release()
      for (const fd of [...p.child, p.stdin, p.stdout, p.stderr]) fs.closeSync(fd)
    }
    fifos.close()
  })

  it('makes its stock through the command launcher (no process of its own), and through mkfifo where there is none', async () => {
    expect(defaultLauncher()?.alive).toBe(true)
    const path0 = process.env.PATH
    const launcher0 = process.env.VGRID_LAUNCHER
    try {
      // no mkfifo to be found: the launcher makes them
      process.env.PATH = '/nonexistent'
      await expectFifosOf(maker().fifos)
      // no launcher: the mkfifo program makes them
      process.env.PATH = path0
      process.env.VGRID_LAUNCHER = 'node'
      await expectFifosOf(maker().fifos)
    } finally {
      process.env.PATH = path0
      if (launcher0 === undefined) delete process.env.VGRID_LAUNCHER
      else process.env.VGRID_LAUNCHER = launcher0
    }
  })
})
