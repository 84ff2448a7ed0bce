/**
 * The submitter's workspace scans under a burst of runs: runs that ask while a scan is under
 * way share the next one, and no run gets a snapshot older than the workspace it asked about.
 */
import { afterEach, describe, expect, it } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { Harness } from './harness.js'
import { WorkspaceSync, type WorkspaceScan } from '../../src/agent/workspace-sync.js'

const h = new Harness()
afterEach(async () => { await h.cleanup() })

describe('WorkspaceSync.scan', () => {
  it('shares scans between concurrent callers, each seeing what was there when it asked', async () => {
    const home = await h.home()
    const ws = await h.home()
    const sync = await WorkspaceSync.start(home, await h.start({ home }))
    try {
      const ref = { dir: ws, cwd: '' }
      // enough files that a scan spans many turns of the event loop
      for (let d = 0; d < 20; d++) {
        fs.mkdirSync(path.join(ws, `d${d}`))
        for (let f = 0; f < 100; f++) fs.writeFileSync(path.join(ws, `d${d}`, `f${f}`), `${d}/${f}`)
      }
      const size = (s: WorkspaceScan): number => {
        const file = s.tree.entries.get('v')
        return file?.kind === 'file' ? file.size : -1
      }
      fs.writeFileSync(path.join(ws, 'v'), 'x')
      let firstDone = false
      const first = sync.scan(ref).finally(() => { firstDone = true })
      // the first scan hashes 2,000 new files: it is still running when the next callers ask
      await new Promise((resolve) => setImmediate(resolve))
      expect(firstDone).toBe(false)
      fs.writeFileSync(path.join(ws, 'v'), 'xx')
      fs.writeFileSync(path.join(ws, 'late'), 'made after the first scan began')
      const later = [sync.scan(ref), sync.scan(ref), sync.scan(ref)]
      await first
      const scans = await Promise.all(later)
      // not the scan that was running when they asked: one that started after, shared
      for (const s of scans) {
        expect(size(s)).toBe(2)
        expect(s.tree.entries.has('late')).toBe(true)
      }
      expect(new Set(scans).size).toBe(1)
    } finally {
      await sync.close()
    }
  })
})
