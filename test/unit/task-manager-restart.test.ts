/**
 * What a restarted owner decides about the tasks whose commands ran on it (TaskManager.start),
 * from its journal and the list of commands its previous run left running, on real files.
 * The agent is given as stopping, so that nothing is placed: only the decision is looked at.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { JOURNAL_NAME } from '../../src/agent/tasks/journal.js'
import { TaskManager } from '../../src/agent/tasks/manager.js'
import { Placer, type RunContext } from '../../src/agent/run/index.js'

let home: string
beforeEach(() => { home = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-restart-')) })
afterEach(() => { fs.rmSync(home, { recursive: true, force: true }) })

const SELF = { peer: '12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh', host: 'lab-01' }
const ID = '0123456789abcdef'

/** A task killed with its agent right after its command started here, before `started` was written. */
function journal (retries: number): void {
  const record = {
    id: ID, owner: SELF.peer, ownerHost: SELF.host, argv: ['sleep', '300'], state: 'queued', created: 1_765_000_000_000, deps: [], retries,
    attempts: [{ peer: SELF.peer, host: SELF.host, started: 1_765_000_000_001, logFrom: 0, began: false }], attached: false, children: []
  }
  fs.mkdirSync(path.join(home, 'tasks'))
  fs.writeFileSync(path.join(home, 'tasks', JOURNAL_NAME), JSON.stringify({ record, spec: { argv: ['sleep', '300'], env: {}, cpus: 1, gpus: 0 }, group: ID, gang: false }) + '\n')
}

async function restarted (interrupted: string[]): Promise<TaskManager> {
  const m = await TaskManager.open(home, SELF)
  const ctx = { shutdown: AbortSignal.abort() } as unknown as RunContext
  m.start(ctx, new Placer(ctx), interrupted)
  return m
}

describe('an owner restarted after a SIGKILL', () => {
  it('counts a command it had started as an attempt even when the record still said queued', async () => {
    journal(0)
    const m = await restarted([ID])
    try {
      const t = m.get(ID)!
      expect(t.state).toBe('lost')
      expect(t.attempts).toMatchObject([{ state: 'lost', began: true, error: 'the owning agent restarted' }])
    } finally {
      await m.close()
    }
  })

  it('places such a task again when it has a retry left, and says why', async () => {
    journal(1)
    const m = await restarted([ID])
    try {
      const t = m.get(ID)!
      expect(t.state).toBe('queued')
      expect(t.history?.at(-1)?.why).toBe('the owning agent restarted while it ran: placed again')
    } finally {
      await m.close()
    }
  })

  it('leaves a task whose command never started here queued, with no attempt spent', async () => {
    journal(0)
    const m = await restarted([])
    try {
      const t = m.get(ID)!
      expect(t.state).toBe('queued')
      expect(t.attempts).toMatchObject([{ state: 'lost', began: false }])
    } finally {
      await m.close()
    }
  })
})
