/**
 * What a task manager holds per record: an owner keeps up to MAX_TASKS (20,000) of them, so
 * a few hundred bytes more per record is megabytes (issue 16, the soak benchmark).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import v8 from 'node:v8'
import { JOURNAL_NAME } from '../../src/agent/tasks/journal.js'
import { TaskManager } from '../../src/agent/tasks/manager.js'

let home: string
beforeEach(() => { home = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-manager-')) })
afterEach(() => { fs.rmSync(home, { recursive: true, force: true }) })

const PEER = '12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh'

function line (i: number): string {
  const id = i.toString(16).padStart(16, '0')
  const record = {
    id, owner: PEER, ownerHost: 'lab-01', submitter: PEER, user: 'ann@lab-01', argv: ['true'], state: 'succeeded', created: 1_765_000_000_000 + i,
    deps: [], retries: 0, attempts: [{ peer: PEER, host: 'lab-01', started: 1_765_000_000_001 + i, ended: 1_765_000_000_002 + i, state: 'succeeded', exitCode: 0 }],
    attached: false, children: [], ended: 1_765_000_000_002 + i, exitCode: 0, ...(i % 2 === 0 ? { name: 'sweep', shard: { index: i, count: 100 } } : {})
  }
  return JSON.stringify({ record, spec: { argv: ['true'], env: {}, cpus: 1, gpus: 0 }, group: id, gang: false, ...(i % 3 === 0 ? { workspace: { dir: '/ws', cwd: '' } } : {}) })
}

describe('TaskManager memory per record', () => {
  it('keeps only a key of each ended task, all of one hidden class, and reads the rest back', async () => {
    fs.mkdirSync(path.join(home, 'tasks'))
    fs.writeFileSync(path.join(home, 'tasks', JOURNAL_NAME), Array.from({ length: 60 }, (_, i) => line(i)).join('\n') + '\n')
    const m = await TaskManager.open(home, { peer: PEER, host: 'lab-01' })
    try {
      const entries = [...(m as unknown as { ended: Map<string, object> }).ended.values()]
      expect(entries).toHaveLength(60)
      expect((m as unknown as { live: Map<string, object> }).live.size).toBe(0)
      v8.setFlagsFromString('--allow-natives-syntax')
      // eslint-disable-next-line no-new-func
      const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean
      v8.setFlagsFromString('--no-allow-natives-syntax')
      const classes: object[] = []
      for (const e of entries) if (!classes.some((c) => sameMap(c, e))) classes.push(e)
      expect(classes).toHaveLength(1)
      // the rest of a record is read back from the journal when asked for
      const four = m.get((4).toString(16).padStart(16, '0'))!
      expect(four).toMatchObject({ name: 'sweep', shard: { index: 4, count: 100 }, attempts: [{ host: 'lab-01', exitCode: 0 }] })
      expect(m.list()).toHaveLength(60)
      expect(m.namedSubmissions('sweep', { asker: PEER, workspace: '/ws' }).map((s) => [s.scope, s.tasks.map((t) => t.shard?.index)])).toEqual([['workspace', [54]], ['workspace', [48]], ['own', [58]], ['own', [56]]])
      expect(m.find('00000000000000')).toHaveLength(60)
    } finally {
      await m.close()
    }
  })
})
