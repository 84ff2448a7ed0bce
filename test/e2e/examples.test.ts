/**
 * The scripts in examples/ run against a real two-agent grid with `vrun` and `vgrid` on
 * PATH (as `npm link` puts them), so they cannot go stale.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { startGrid, stopAll, tempDir, BIN, ROOT, type AgentProc } from '../helpers/procs.js'

let a: AgentProc
let b: AgentProc
let binDir: string

beforeAll(async () => {
  [a, b] = await startGrid(2)
  binDir = tempDir('vgrid-bin-')
  fs.symlinkSync(BIN.vrun, path.join(binDir, 'vrun'))
  fs.symlinkSync(BIN.vgrid, path.join(binDir, 'vgrid'))
}, 60_000)
afterAll(async () => { await stopAll() })

async function example (name: string, args: string[] = []): Promise<string> {
  const { stdout } = await promisify(execFile)(path.join(ROOT, 'examples', name), args, {
    cwd: a.workspace,
    env: { ...process.env, VGRID_HOME: a.home, PATH: `${binDir}:${process.env.PATH ?? ''}` },
    timeout: 60_000
  })
  return stdout
}

describe('examples/', () => {
  it('each-member.sh runs on every member', async () => {
    const out = await example('each-member.sh', ['sh', '-c', 'echo $VGRID_PEER'])
    const lines = out.trim().split('\n').sort()
    expect(lines).toEqual([`${a.peer.slice(0, 16)}: ${a.peer}`, `${b.peer.slice(0, 16)}: ${b.peer}`].sort())
  })

  it('fan-out.sh sums the squares computed on the grid', async () => {
    expect(await example('fan-out.sh')).toBe('sum of squares: 91\n')
  })

  it('pipe.sh streams stdin through a remote sort and reports the exit code', async () => {
    expect(await example('pipe.sh')).toBe('10000\n9999\n9998\nremote exit code: 3\n')
  })
})
