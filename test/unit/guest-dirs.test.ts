/**
 * A guest's directories on the executor (guest-run.ts): made, and removed after its run
 * however it left them, without following a link it put there.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { guestTmpPool, makeGuestDirs, removeGuestDirs } from '../../src/agent/guest-run.js'
import { removeTempDirs, tempDir } from '../helpers/procs.js'

afterEach(removeTempDirs)

function dirsIn (home: string, tmps = guestTmpPool(home), scratch = false): ReturnType<typeof makeGuestDirs> {
  const runtime = tempDir('vgrid-runtime-')
  for (const d of [home, runtime]) fs.mkdirSync(path.join(d, 'guests'), { recursive: true })
  return makeGuestDirs(runtime, '0123456789abcdef', tmps, undefined, scratch)
}

/** Neither of the guest's directories is left. */
function gone (dirs: ReturnType<typeof makeGuestDirs>): boolean {
  return !fs.existsSync(dirs.home) && !fs.existsSync(dirs.tmp)
}

describe('removeGuestDirs', () => {
  it('removes the directories and the mount points a sandbox made in them', async () => {
    for (const sandboxed of [true, false]) {
      const dirs = dirsIn(tempDir())
      // as bwrap leaves them: the workspace's mount point under the guest's /tmp, a few levels deep
      fs.mkdirSync(path.join(dirs.tmp, 'vgrid-ws-x/sub'), { recursive: true })
      fs.mkdirSync(path.join(dirs.tmp, 'work'))
      await removeGuestDirs(dirs, sandboxed)
      expect(gone(dirs)).toBe(true)
    }
  })

  it('removes what the command left, and only the links it left, not what they point to', async () => {
    for (const sandboxed of [true, false]) {
      const dirs = dirsIn(tempDir())
      const outside = tempDir('vgrid-outside-')
      fs.mkdirSync(path.join(outside, 'empty'))
      fs.writeFileSync(path.join(outside, 'keep.txt'), 'keep')
      fs.mkdirSync(path.join(dirs.tmp, 'd/e'), { recursive: true })
      fs.writeFileSync(path.join(dirs.tmp, 'd/e/f'), 'left')
      fs.symlinkSync(outside, path.join(dirs.tmp, 'link'))
      fs.symlinkSync(outside, path.join(dirs.home, 'link'))
      fs.mkdirSync(path.join(dirs.home, 'agent.sock'))
      await removeGuestDirs(dirs, sandboxed)
      expect(gone(dirs)).toBe(true)
      expect(fs.readdirSync(outside).sort()).toEqual(['empty', 'keep.txt'])
    }
  })

  it('takes a tree of many empty directories past the blocking budget through the walk', async () => {
    const dirs = dirsIn(tempDir())
    for (let i = 0; i < 100; i++) fs.mkdirSync(path.join(dirs.tmp, `d${i}`))
    await removeGuestDirs(dirs, true)
    expect(gone(dirs)).toBe(true)
  })

  it('keeps a /tmp the guest left as it got it for the next guest, and never one it left anything in', async () => {
    const home = tempDir()
    const tmps = guestTmpPool(home)
    // a run without a workspace: its /tmp holds the mount point of its scratch directory
    const first = dirsIn(home, tmps, true)
    expect(fs.readdirSync(first.tmp)).toEqual(['work'])
    await removeGuestDirs(first, true, tmps)
    expect(fs.existsSync(first.home)).toBe(false)
    expect(fs.readdirSync(first.tmp)).toEqual(['work'])
    const second = dirsIn(home, tmps, true)
    expect(second.tmp).toBe(first.tmp)
    // one it wrote in is removed, and the next guest gets a new one
    fs.writeFileSync(path.join(second.tmp, 'work', 'left.txt'), 'x')
    await removeGuestDirs(second, true, tmps)
    expect(fs.existsSync(second.tmp)).toBe(false)
    const third = dirsIn(home, tmps, true)
    expect(third.tmp).not.toBe(first.tmp)
    expect(fs.readdirSync(third.tmp)).toEqual(['work'])
    // a run with a workspace elsewhere gets an empty one, never one with a mount point in it
    await removeGuestDirs(third, true, tmps)
    const fourth = dirsIn(home, tmps)
    expect(fs.readdirSync(fourth.tmp)).toEqual([])
    expect(fourth.tmp).not.toBe(third.tmp)
  })
})
