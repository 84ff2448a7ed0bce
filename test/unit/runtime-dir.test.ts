/**
 * The agent's runtime directory (runtime-dir.ts): in memory where the machine has a tmpfs
 * for it, never one another user made first, emptied at each start, and swept once its
 * agent's home is gone.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { HOME_RUNTIME_DIR, openRuntimeDir, removeRuntimeDir, runtimeCandidates, sweepRuntimeDirs } from '../../src/agent/runtime-dir.js'
import { removeTempDirs, tempDir } from '../helpers/procs.js'

const TMPFS_MAGIC = 0x01021994
const made: string[] = []

/** A directory on /dev/shm (a tmpfs on Linux), standing for a user's $XDG_RUNTIME_DIR. */
function xdg (): string {
  const d = fs.mkdtempSync('/dev/shm/vgrid-xdg-test-')
  made.push(d)
  return d
}

afterEach(() => {
  for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true })
  removeTempDirs()
})

describe('openRuntimeDir', () => {
  it('takes a directory of its own in $XDG_RUNTIME_DIR, private, in memory, and names its home there', () => {
    const home = tempDir()
    const env = { XDG_RUNTIME_DIR: xdg() }
    const rt = openRuntimeDir(home, env)
    expect(rt.inMemory).toBe(true)
    expect(path.dirname(rt.dir)).toBe(env.XDG_RUNTIME_DIR)
    expect(fs.statfsSync(rt.dir).type).toBe(TMPFS_MAGIC)
    expect(fs.statSync(rt.dir).mode & 0o777).toBe(0o700)
    expect(fs.readFileSync(path.join(rt.dir, 'home'), 'utf8')).toBe(home)
    // the same home, the same directory; another home, another
    expect(openRuntimeDir(home, env).dir).toBe(rt.dir)
    expect(openRuntimeDir(tempDir(), env).dir).not.toBe(rt.dir)
  })

  it('empties what a killed agent left there, and a clean stop removes it', () => {
    const home = tempDir()
    const env = { XDG_RUNTIME_DIR: xdg() }
    const rt = openRuntimeDir(home, env)
    fs.mkdirSync(path.join(rt.dir, 'guests/0123/bin'), { recursive: true })
    fs.writeFileSync(path.join(rt.dir, 'stale'), 'x')
    const again = openRuntimeDir(home, env)
    expect(fs.readdirSync(again.dir)).toEqual(['home'])
    removeRuntimeDir(again)
    expect(fs.existsSync(again.dir)).toBe(false)
  })

  it('skips an $XDG_RUNTIME_DIR on disk, and falls back to /dev/shm', () => {
    const home = tempDir()
    const onDisk = tempDir('vgrid-xdg-disk-')
    const rt = openRuntimeDir(home, { XDG_RUNTIME_DIR: onDisk })
    made.push(rt.dir)
    expect(rt.dir.startsWith('/dev/shm/vgrid-')).toBe(true)
    expect(fs.readdirSync(onDisk)).toEqual([])
  })

  it('never uses a name another took first (a link, a directory others may enter): the home\'s own then', () => {
    const home = tempDir()
    const env = { XDG_RUNTIME_DIR: xdg() }
    const [inXdg, inShm] = runtimeCandidates(home, env)
    expect(inXdg).toBeDefined()
    expect(inShm).toBeDefined()
    // a link planted where the agent's directory would be, to a directory of the planter's
    const target = tempDir('vgrid-planted-')
    fs.symlinkSync(target, inXdg!)
    // an open directory planted in /dev/shm
    fs.mkdirSync(inShm!, { mode: 0o777 })
    fs.chmodSync(inShm!, 0o777)
    made.push(inShm!)
    const rt = openRuntimeDir(home, env)
    expect(rt).toEqual({ dir: path.join(home, HOME_RUNTIME_DIR), inMemory: false })
    expect(fs.statSync(rt.dir).mode & 0o777).toBe(0o700)
    // nothing was written through the link or into the open directory
    expect(fs.readdirSync(target)).toEqual([])
    expect(fs.readdirSync(inShm!)).toEqual([])
  })
})

describe('sweepRuntimeDirs', () => {
  it('removes the directories of agents whose home is gone, and only those', () => {
    const env = { XDG_RUNTIME_DIR: xdg() }
    const live = tempDir()
    const gone = tempDir()
    const kept = openRuntimeDir(live, env)
    const left = openRuntimeDir(gone, env)
    fs.mkdirSync(path.join(left.dir, 'fifos'))
    // not an agent's: no home named in it
    const other = path.join(env.XDG_RUNTIME_DIR, 'vgrid-0123456789abcdef')
    fs.mkdirSync(other)
    fs.rmSync(gone, { recursive: true })
    sweepRuntimeDirs(env)
    expect(fs.existsSync(left.dir)).toBe(false)
    expect(fs.existsSync(kept.dir)).toBe(true)
    expect(fs.existsSync(other)).toBe(true)
  })
})
