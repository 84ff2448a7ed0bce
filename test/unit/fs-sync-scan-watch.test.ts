/**
 * Watched scans (scan-watch.ts): after every kind of change a user or a program makes, a scan
 * that reads only the directories where something happened gives the tree a full scan gives,
 * and one where nothing happened reads no directory at all.
 */
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { execFileSync, spawnSync } from 'node:child_process'
import { writeFileSync, utimesSync, statSync } from 'node:fs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { scanWorkspace } from '../../src/fs-sync/scan.js'
import { StatCache } from '../../src/fs-sync/stat-cache.js'
import { EncodeMemo, hexOf } from '../../src/fs-sync/tree-codec.js'
import { SMALL_TREE_ENTRIES, WatchHub, type TreeWatch } from '../../src/fs-sync/scan-watch.js'
import { checkCopy } from '../../src/fs-sync/copy-check.js'
import type { FileNode } from '../../src/fs-sync/types.js'

let tmp: string
let root: string
let hub: WatchHub
let tree: TreeWatch
let cache: StatCache
let memo: EncodeMemo

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vgrid-watch-'))
  root = path.join(tmp, 'ws')
  await fs.mkdir(root)
  hub = WatchHub.open(path.join(tmp, 'marks'))!
  tree = hub.tree(root)
  cache = StatCache.empty(undefined, { racyMarginMs: -60_000 })
  memo = new EncodeMemo()
})

afterEach(async () => {
  hub.close()
  await fs.rm(tmp, { recursive: true, force: true })
})

async function write (rel: string, content: string = 'x'): Promise<void> {
  const p = path.join(root, rel)
  await fs.mkdir(path.dirname(p), { recursive: true })
  await fs.writeFile(p, content)
}

interface Seen { root: string, warnings: string[], reused: number, blobs: string[], files: number, bytes: number }

/** A scan through the watch, and what a full scan of the same disk says. */
async function scanBoth (): Promise<{ watched: Seen, full: Seen }> {
  const warnings: string[] = []
  const watch = await tree.begin()
  expect(watch).toBeDefined()
  const got = await scanWorkspace(root, { statCache: cache, memo, watch: watch!, onWarning: (m) => warnings.push(m) })
  const fullWarnings: string[] = []
  const full = await scanWorkspace(root, { onWarning: (m) => fullWarnings.push(m) })
  // every record a peer may ask for, and the totals placement uses
  const seen = (s: typeof got, w: string[], reused: number): Seen => ({
    root: hexOf(s.rootHash), warnings: w, reused, blobs: [...s.blobs.keys()].sort(), files: s.stats.files, bytes: s.stats.bytes
  })
  return { watched: seen(got, warnings, watch!.reused), full: seen(full, fullWarnings, 0) }
}

async function expectSame (): Promise<Seen> {
  const { watched, full } = await scanBoth()
  expect(watched.root).toBe(full.root)
  expect(watched.warnings).toEqual(full.warnings)
  expect(watched.blobs).toEqual(full.blobs)
  expect([watched.files, watched.bytes]).toEqual([full.files, full.bytes])
  return watched
}

async function populate (): Promise<void> {
  for (let d = 0; d < 4; d++) {
    for (let f = 0; f < 5; f++) await write(`d${d}/sub/f${f}.txt`, `file ${d}/${f}`)
    await write(`d${d}/top.txt`, `top ${d}`)
  }
  await write('readme.md', 'hello')
  await fs.symlink('readme.md', path.join(root, 'link'))
}

describe('watched scans', () => {
  it('read no directory when nothing changed, and give the same tree', async () => {
    await populate()
    const first = await expectSame()
    expect(first.reused).toBe(0)
    expect(tree.watching).toBe(9)
    const second = await expectSame()
    // the root, d0…d3 and their sub/
    expect(second.reused).toBe(9)
  })

  it('see every kind of change, and read only where it happened', async () => {
    await populate()
    await expectSame()
    await expectSame()
    // [what, the step; true where the whole tree is to be read again]
    const steps: Array<[string, () => Promise<void> | void, boolean?]> = [
      ['an edit that keeps the size and the mtime', () => {
        const p = path.join(root, 'd1/sub/f2.txt')
        const st = statSync(p)
        writeFileSync(p, 'FILE 1/2')
        utimesSync(p, st.atime, st.mtime)
      }],
      ['a new file deep down', async () => { await write('d2/sub/new.txt', 'new') }],
      ['a file removed', async () => { await fs.rm(path.join(root, 'd0/top.txt')) }],
      ['an exec bit', async () => { await fs.chmod(path.join(root, 'd3/sub/f0.txt'), 0o755) }],
      ['a link pointed elsewhere', async () => { await fs.rm(path.join(root, 'link')); await fs.symlink('d0', path.join(root, 'link')) }],
      ['a directory renamed', async () => { await fs.rename(path.join(root, 'd1'), path.join(root, 'd9')) }],
      ['a directory replaced by another of the same name', async () => {
        await fs.rm(path.join(root, 'd2/sub'), { recursive: true })
        await write('d2/sub/other.txt', 'other')
      }],
      ['a directory replaced by a file', async () => { await fs.rm(path.join(root, 'd3/sub'), { recursive: true }); await write('d3/sub', 'now a file') }],
      ['an ignore file that leaves out a deep file', async () => { await write('.vgridignore', 'f1.txt\n') }, true],
      ['an ignore file that takes it back', async () => { await write('d0/.vgridignore', '!f1.txt\n') }],
      ['a new directory with files', async () => { await write('n/a/b/c.txt', 'deep'); await write('n/a/d.txt', 'd') }],
      ['a file moved between directories', async () => { await fs.rename(path.join(root, 'n/a/d.txt'), path.join(root, 'd0/sub/d.txt')) }],
      ['a mtime moved alone', () => { utimesSync(path.join(root, 'readme.md'), new Date(2001, 1, 1), new Date(2001, 1, 1)) }],
      ['a fifo (a warning, at every scan)', () => { execFileSync('mkfifo', [path.join(root, 'd0/sub/pipe')]) }]
    ]
    for (const [what, step, whole] of steps) {
      await step()
      const after = await expectSame().catch((err: Error) => { throw new Error(`${what}: ${err.message}`) })
      // a change reads its directory again, not the whole tree
      if (whole === true) expect(after.reused, what).toBe(0)
      else expect(after.reused, what).toBeGreaterThan(0)
    }
    // the fifo's warning again, with nothing else changed
    const again = await expectSame()
    expect(again.warnings.join('\n')).toMatch(/pipe.*a fifo cannot be synced/)
  })

  it('watches a directory made again where one was removed (the same inode number, often)', async () => {
    await populate()
    await expectSame()
    for (let i = 0; i < 3; i++) {
      const dir = path.join(root, 'd1/sub')
      const ino = statSync(dir).ino
      await fs.rm(dir, { recursive: true })
      await fs.mkdir(dir)
      await write('d1/sub/a.txt', `made again ${i}`)
      await expectSame()
      // what happens in it now is seen
      await write('d1/sub/a.txt', `edited ${i}`)
      await write('d1/sub/b.txt', `added ${i}`)
      await expectSame().catch((err: Error) => { throw new Error(`inode ${ino === statSync(dir).ino ? 'reused' : 'new'}: ${err.message}`) })
    }
  })

  it('trusts nothing after a mount or unmount in the workspace, and is not disturbed by one elsewhere', async (ctx) => {
    // A mount raises no event in the directory it covers. (Root is needed to mount: CI runs as root.)
    const mount = (dir: string): string | undefined => {
      const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { encoding: 'utf8' })
      return r.status === 0 ? undefined : (r.stderr ?? '').trim()
    }
    const unmount = (dir: string): void => { if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir]) }
    const elsewhere = path.join(tmp, 'elsewhere')
    await fs.mkdir(elsewhere)
    const cannot = mount(elsewhere)
    if (cannot !== undefined) {
      console.warn(`skipped: cannot mount a tmpfs (needs root): ${cannot}`)
      ctx.skip()
    }
    const inside = path.join(root, 'd0/mnt')
    let mounted = false
    try {
      unmount(elsewhere)
      await populate()
      await fs.mkdir(inside)
      await expectSame()
      const before = await expectSame()
      expect(before.reused).toBe(10)
      // a file system mounted and unmounted outside the workspace: nothing read again
      expect(mount(elsewhere)).toBeUndefined()
      expect((await expectSame()).reused).toBe(10)
      unmount(elsewhere)
      expect((await expectSame()).reused).toBe(10)
      // one mounted over a directory of the workspace, and written: seen, as after unmounting it
      expect(mount(inside)).toBeUndefined()
      mounted = true
      writeFileSync(path.join(inside, 'on-tmpfs.txt'), 'on the tmpfs')
      const over = await expectSame()
      expect(over.reused).toBe(0)
      expect(over.files).toBe(before.files + 1)
      unmount(inside)
      mounted = false
      const back = await expectSame()
      expect(back.reused).toBe(0)
      expect(back.files).toBe(before.files)
    } finally {
      if (mounted) unmount(inside)
      unmount(elsewhere)
    }
  })

  it('watches no tree smaller than SMALL_TREE_ENTRIES (its walk is cheaper), and trusts nothing of before once one grew', async () => {
    await populate()
    await expectSame()
    expect(tree.watching).toBe(9)
    // a tree that shrank under the mark: read whole, its watches closed
    expect(await tree.begin(SMALL_TREE_ENTRIES - 1)).toBeUndefined()
    expect(tree.watching).toBe(0)
    // what happens meanwhile goes unseen by any watch
    await write('d1/sub/f2.txt', 'changed while unwatched')
    // grown past it again: watched from a walk that reads everything
    const grown = await expectSame()
    expect(grown.reused).toBe(0)
    expect((await expectSame()).reused).toBe(9)
  })

  it('reads a directory again at every scan while it holds a file with another link', async () => {
    await populate()
    const outside = path.join(tmp, 'outside.txt')
    await fs.link(path.join(root, 'd0/sub/f0.txt'), outside)
    await expectSame()
    // a write through the other link raises no event in the workspace's directories
    writeFileSync(outside, 'changed from outside')
    const after = await expectSame()
    expect(after.reused).toBe(8)
    const scan = await scanWorkspace(root, { statCache: cache })
    expect(((scan.tree.entries.get('d0') as { entries: Map<string, { entries: Map<string, FileNode> }> }).entries.get('sub')!.entries.get('f0.txt')!).size).toBe('changed from outside'.length)
  })

  it('trusts nothing after more events than the queue could hold, or when the root was replaced', async () => {
    await populate()
    await expectSame()
    hub.events += hub.overflowGuard
    expect((await expectSame()).reused).toBe(0)
    expect((await expectSame()).reused).toBe(9)
    await fs.rename(root, path.join(tmp, 'old'))
    await fs.mkdir(root)
    await write('d0/sub/f0.txt', 'another workspace')
    const after = await expectSame()
    expect(after.reused).toBe(0)
  })

  it('past the cap on directories, watches none of the workspace and reads it all at every scan', async () => {
    await populate()
    const small = WatchHub.open(path.join(tmp, 'marks-small'), 5)!
    try {
      const t = small.tree(root)
      for (let i = 0; i < 3; i++) {
        // (after the first, begin says the workspace is not watched: the scan reads it all)
        const watch = await t.begin()
        if (i === 0) expect(watch).toBeDefined()
        else expect(watch).toBeUndefined()
        const got = await scanWorkspace(root, { ...(watch !== undefined ? { watch } : {}) })
        const full = await scanWorkspace(root)
        expect(hexOf(got.rootHash)).toBe(hexOf(full.rootHash))
        expect(t.watching).toBe(0)
        expect(small.dirs).toBe(0)
        await write(`d0/sub/more${i}.txt`, 'more')
      }
    } finally {
      small.close()
    }
  })

  it('trusts nothing after a scan that failed, and stops watching what left the tree', async () => {
    await populate()
    await expectSame()
    const watch = await tree.begin()
    const ac = new AbortController()
    ac.abort()
    await expect(scanWorkspace(root, { statCache: cache, memo, watch: watch!, signal: ac.signal })).rejects.toThrow()
    await write('d0/sub/late.txt', 'late')
    expect((await expectSame()).reused).toBe(0)
    await fs.rm(path.join(root, 'd1'), { recursive: true })
    await write('.vgridignore', 'd2/\n')
    await expectSame()
    // the root, d0, d0/sub, d3, d3/sub
    expect(tree.watching).toBe(5)
  })
})

describe('watched checks of a copy', () => {
  /** Rewrites bytes of `file` in place through a shared mmap(): no inotify event. */
  function mmapWrite (file: string, bytes: string): void {
    execFileSync('python3', ['-c', [
      'import mmap, sys',
      'f = open(sys.argv[1], "r+b")',
      'm = mmap.mmap(f.fileno(), 0)',
      'm[0:len(sys.argv[2])] = sys.argv[2].encode()',
      'm.flush(); m.close(); f.close()'
    ].join('\n'), file, bytes])
  }

  async function check (strict: boolean): Promise<{ changed: string[], quiet: number }> {
    const base = (await scanWorkspace(root, { statCache: cache })).tree
    const watch = await tree.begin()
    const got = await checkCopy(root, base, { statCache: cache, strict, watch: watch! })
    if (!('changed' in got)) throw new Error(got.unusable)
    return { changed: got.changed, quiet: watch!.reused }
  }

  it('after a command, reads only the directories where something happened, and still stats every file', async () => {
    await populate()
    const base = (await scanWorkspace(root, { statCache: cache })).tree
    let watch = await tree.begin()
    expect(await checkCopy(root, base, { statCache: cache, strict: true, watch: watch! })).toEqual({ changed: [] })
    expect(watch!.reused).toBe(0)

    // what a command does: a new file deep down, and a write through mmap elsewhere
    await write('d2/sub/new.txt', 'new')
    const target = path.join(root, 'd1/sub/f2.txt')
    const before = statSync(target)
    mmapWrite(target, 'FILE')
    // (the mtime moves, which is what the stat sees; no event says so)
    expect(statSync(target).mtimeMs).toBeGreaterThanOrEqual(before.mtimeMs)
    watch = await tree.begin()
    const got = await checkCopy(root, base, { statCache: cache, strict: true, watch: watch! })
    expect(got).toEqual({ changed: ['d2/sub/new.txt', 'd1/sub/f2.txt'] })
    // every directory but d2/sub was taken unread
    expect(watch!.reused).toBe(8)
  })

  it('before a sync, takes a copy where nothing happened since a check found it whole as it is', async () => {
    await populate()
    expect(await check(true)).toEqual({ changed: [], quiet: 0 })
    expect(await check(false)).toEqual({ changed: [], quiet: 0 })
    // taken unread, and still watched
    expect(tree.watching).toBe(9)
    await write('d3/sub/f1.txt', 'changed')
    const got = await check(false)
    expect(got.changed).toEqual([])
    // the scan in check() recorded the change in the base; only d3/sub was read again
    expect(got.quiet).toBe(8)
  })
})
