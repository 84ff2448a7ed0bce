/**
 * Serving a chunk from the file a scan found it in: never bytes that are not the chunk. A file
 * untouched since a scan that trusted its stat is served without hashing; any other is hashed.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createHash } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readChunkAt, readChunkFromFd } from '../../src/fs-sync/read-chunk.js'
import { scanWorkspace } from '../../src/fs-sync/scan.js'
import { RACY_MARGIN_MS } from '../../src/fs-sync/stat-cache.js'
import type { ChunkSource, FileStatKey } from '../../src/fs-sync/types.js'
import { waitFor } from '../helpers/wait.js'

let dir: string
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-read-chunk-')) })
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }) })

const sha = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest()
function keyOf (file: string): FileStatKey {
  const st = fs.statSync(file, { bigint: true })
  return { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino }
}

describe('readChunkFromFd', () => {
  it('trusts a file whose stat is the trusted one, and hashes any other', async () => {
    const file = path.join(dir, 'f')
    fs.writeFileSync(file, 'aaaabbbb')
    const stat = keyOf(file)
    const src: ChunkSource = { path: file, offset: 4, size: 4, stat }
    const wrongName = sha(Buffer.from('not these bytes'))
    const fd = fs.openSync(file, 'r')
    try {
      // untouched: served as is (the name is not checked: the scan hashed these bytes)
      expect(Buffer.from(readChunkFromFd(src, wrongName, fd)!).toString()).toBe('bbbb')
      // without a trusted stat the bytes must hash to the name
      expect(readChunkFromFd({ path: file, offset: 4, size: 4 }, wrongName, fd)).toBeUndefined()
      expect(Buffer.from(readChunkFromFd({ path: file, offset: 4, size: 4 }, sha(Buffer.from('bbbb')), fd)!).toString()).toBe('bbbb')
      // rewritten in place, same size (until the coarse clock has moved the ctime): the hash decides
      await waitFor(() => { fs.writeFileSync(file, 'aaaacccc'); return keyOf(file).ctimeNs !== stat.ctimeNs }, 'a rewrite with a new ctime')
      expect(fs.readFileSync(file, 'utf8')).toBe('aaaacccc')
      expect(readChunkFromFd(src, sha(Buffer.from('bbbb')), fd)).toBeUndefined()
      expect(Buffer.from(readChunkFromFd(src, sha(Buffer.from('cccc')), fd)!).toString()).toBe('cccc')
    } finally {
      fs.closeSync(fd)
    }
    // a short file gives nothing, trusted or not
    fs.writeFileSync(file, 'aa')
    expect(await readChunkAt(src, sha(Buffer.from('bbbb')))).toBeUndefined()
  })
})

describe('scan sources', () => {
  it('carry the stat only of files unchanged for the racy margin before the scan', async () => {
    const old = path.join(dir, 'old')
    fs.writeFileSync(old, 'old content')
    await waitFor(() => Date.now() - Number(keyOf(old).ctimeNs / 1_000_000n) > RACY_MARGIN_MS + 50, 'a file older than the margin', RACY_MARGIN_MS + 5_000)
    fs.writeFileSync(path.join(dir, 'fresh'), 'fresh content')
    const scan = await scanWorkspace(dir)
    const src = (content: string): ChunkSource => scan.sources.get(sha(Buffer.from(content)).toString('hex'))!
    expect(src('old content').stat).toEqual(keyOf(old))
    expect(src('fresh content').stat).toBeUndefined()
    expect(Buffer.from((await readChunkAt(src('old content'), sha(Buffer.from('old content'))))!).toString()).toBe('old content')
  })
})
