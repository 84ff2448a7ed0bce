/** What an executor's workspace sync keeps in memory stays bounded however many copies it made. */
import { afterEach, describe, expect, it } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { Harness } from './harness.js'
import { WorkspaceSync, MAX_CACHED_COPY_TREES } from '../../src/agent/workspace-sync.js'
import { scanWorkspace, type SyncCopyResult } from '../../src/fs-sync/index.js'

const h = new Harness()
afterEach(async () => { await h.cleanup() })

describe('WorkspaceSync copies', () => {
  it('keeps the decoded trees of the most recent copies only', async () => {
    const home = await h.home()
    const copies = await h.home()
    const sync = await WorkspaceSync.start(home, await h.start({ home }))
    try {
      for (let i = 0; i < MAX_CACHED_COPY_TREES + 6; i++) {
        const dir = path.join(copies, String(i))
        fs.mkdirSync(dir)
        fs.writeFileSync(path.join(dir, 'out'), `copy ${i}`)
        const scan = await scanWorkspace(dir, {})
        // unchanged since its sync: nothing to offer back, only its tree to remember
        await sync.offerOutputs(dir, { rootHash: scan.rootHash, tree: scan.tree } as unknown as SyncCopyResult, { submitter: 'a-submitter', send: async () => {}, exit: { code: 0 } })
      }
      expect(sync.cachedTrees).toBe(MAX_CACHED_COPY_TREES)
    } finally {
      await sync.close()
    }
  })
})
