/**
 * A guest's directories on the executor (guest-run.ts): made, and removed after its run
 * however it left them, without following a link it put there.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { makeGuestDirs, removeGuestDirs } from '../../src/agent/guest-run.js'
import { removeTempDirs, tempDir } from '../helpers/procs.js'

afterEach(removeTempDirs)

function dirsIn (home: string): ReturnType<typeof makeGuestDirs> {
  const runtime = tempDir('vgrid-runtime-')
  for (const d of [home, runtime]) fs.mkdirSync(path.join(d, 'guests'), { recursive: true })
  return makeGuestDirs({ disk: home, runtime }, '0123456789abcdef')
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
})
