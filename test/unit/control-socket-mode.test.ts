/**
 * The control socket is its owner's alone (0600), and making it leaves the rest of the agent
 * alone: a directory another task makes while a socket is being set up (a guest's copy, beside
 * a guest's own socket) keeps the mode it asked for. The socket's mode once came from a
 * narrowed process umask, restored only in the listen callback: a copy made in between came
 * out 0600, and the guest could not enter it.
 */
import { afterEach, describe, expect, it } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { startControlServer, SOCKET_MODE } from '../../src/agent/control/server.js'
import { SOCKET_NAME } from '../../src/protocol/control.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

function privateDir (): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-sock-'))
  dirs.push(d)
  return d
}

const handlers = { peer: 'test', handle: async () => {} }
/** Directories made while sockets are set up, one after another. */
const DIRS = 400
/**
 * Sockets set up at most before the directories are all made: a making loop that stalls
 * (as when a blocking close() starved the loop) fails the test instead of filling the disk
 * with a directory per socket (3 million of them, the one time it hung).
 */
const MAX_SOCKETS = 20_000

describe('the control socket', () => {
  it('is its owner\'s alone, and directories made meanwhile keep their own modes', async () => {
    const elsewhere = privateDir()
    // Other tasks' directories, made by Node's thread pool while sockets are set up.
    let made = 0
    let sockets = 0
    let starting = true
    const making = (async () => {
      while (starting) await Promise.all(Array.from({ length: 8 }, async () => { await fs.promises.mkdir(path.join(elsewhere, String(made++)), { mode: 0o755 }) }))
    })()
    try {
      while (made < DIRS) {
        if (sockets >= MAX_SOCKETS) throw new Error(`${sockets} sockets set up while only ${made} of ${DIRS} directories were made`)
        const home = privateDir()
        const server = await startControlServer(home, handlers)
        sockets++
        const mode = fs.statSync(path.join(home, SOCKET_NAME)).mode & 0o777
        await server.close()
        // gone at once, not at the end: the loop may set up thousands before the directories are made
        fs.rmSync(home, { recursive: true, force: true })
        dirs.splice(dirs.indexOf(home), 1)
        expect(mode).toBe(SOCKET_MODE)
        // a turn of the loop: the mkdirs' completions come in, whatever close() awaited (the
        // race itself is the pool's mkdirs running while a socket is set up)
        await new Promise((resolve) => setImmediate(resolve))
      }
    } finally {
      starting = false
      await making
    }
    const mask = process.umask()
    const narrowed = fs.readdirSync(elsewhere).filter((n) => (fs.statSync(path.join(elsewhere, n)).mode & 0o777) !== (0o755 & ~mask))
    expect(sockets).toBeGreaterThan(1)
    expect(narrowed).toEqual([])
  })
})
