/** The task records' journal, on real files: what a restart reads back. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { JOURNAL_NAME, RecordJournal } from '../../src/agent/tasks/journal.js'

let dir: string
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-journal-')) })
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }) })

const rec = (id: string, state: string): Record<string, unknown> => ({ record: { id, state }, spec: { argv: ['true'] } })
const line = (id: string, state: string): string => JSON.stringify(rec(id, state))
const lines = (): string[] => fs.readFileSync(path.join(dir, JOURNAL_NAME), 'utf8').split('\n').filter((l) => l !== '')
const states = (entries: Array<Record<string, unknown>>): Record<string, unknown> =>
  Object.fromEntries(entries.map((e) => [(e.record as { id: string }).id, (e.record as { state: string }).state]))

describe('RecordJournal', () => {
  it('reads a journal of many megabytes, lines crossing its read windows', () => {
    const { journal } = RecordJournal.open(dir)
    const pad = 'p'.repeat(1500)
    for (let i = 0; i < 3000; i++) journal.append(`t${i}`, JSON.stringify({ record: { id: `t${i}`, state: 'succeeded' }, pad }))
    journal.close()
    expect(fs.statSync(path.join(dir, JOURNAL_NAME)).size).toBeGreaterThan(4 * 1024 * 1024)
    const { journal: again, entries } = RecordJournal.open(dir)
    again.close()
    expect(entries).toHaveLength(3000)
    expect(new Set(entries.map((e) => (e.record as { id: string }).id)).size).toBe(3000)
  })

  it('skips a line past the size limit and keeps the records around it', () => {
    fs.writeFileSync(path.join(dir, JOURNAL_NAME), line('a', 'succeeded') + '\n' + 'x'.repeat(17 * 1024 * 1024) + '\n' + line('b', 'failed') + '\n')
    const { journal, entries } = RecordJournal.open(dir)
    journal.close()
    expect(states(entries)).toEqual({ a: 'succeeded', b: 'failed' })
  })

  it('reads back the last version of each record, and rewrites itself one line per record', () => {
    const { journal } = RecordJournal.open(dir)
    journal.append('a', line('a', 'pending'))
    journal.append('b', line('b', 'pending'))
    journal.append('a', line('a', 'running'))
    journal.append('a', line('a', 'succeeded'))
    journal.close()
    expect(lines()).toHaveLength(4)
    const { journal: again, entries } = RecordJournal.open(dir)
    again.close()
    expect(states(entries)).toEqual({ a: 'succeeded', b: 'pending' })
    expect(lines()).toHaveLength(2)
  })

  it('skips a line torn by a crash mid-append, and goes on appending after it', () => {
    const { journal } = RecordJournal.open(dir)
    journal.append('a', line('a', 'running'))
    journal.close()
    fs.appendFileSync(path.join(dir, JOURNAL_NAME), line('a', 'succeeded').slice(0, 20))
    const { journal: j2, entries } = RecordJournal.open(dir)
    expect(states(entries)).toEqual({ a: 'running' })
    j2.append('a', line('a', 'lost'))
    j2.close()
    const { journal: j3, entries: e3 } = RecordJournal.open(dir)
    j3.close()
    expect(states(e3)).toEqual({ a: 'lost' })
  })

  it('tells the owner which task a torn last line belonged to, and what that cost', () => {
    const A = '0123456789abcdef'
    const B = 'fedcba9876543210'
    const { journal } = RecordJournal.open(dir)
    journal.append(A, line(A, 'running'))
    journal.close()
    const file = path.join(dir, JOURNAL_NAME)
    const warned = (): string[] => {
      const said: string[] = []
      const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s) => { said.push(String(s)); return true })
      try {
        RecordJournal.open(dir).journal.close()
      } finally {
        spy.mockRestore()
      }
      return said.filter((s) => s.includes(' warn '))
    }
    fs.appendFileSync(file, line(A, 'succeeded').slice(0, 40))
    expect(warned()).toEqual([expect.stringContaining(`the last line of ${file} was torn (the agent stopped while writing it): skipped its 40 bytes; task ${A} keeps the state of its previous line`)])
    fs.appendFileSync(file, line(B, 'pending').slice(0, 36))
    expect(warned()).toEqual([expect.stringContaining(`skipped its 36 bytes; task ${B} was recorded only there and is lost`)])
    // a clean journal says nothing
    expect(warned()).toEqual([])
  })

  it('folds in the one-file-per-record layout of earlier versions, then removes those files', () => {
    fs.writeFileSync(path.join(dir, '0123456789abcdef.json'), JSON.stringify(rec('0123456789abcdef', 'succeeded')))
    fs.writeFileSync(path.join(dir, 'fedcba9876543210.json'), '{ not json')
    fs.writeFileSync(path.join(dir, '0123456789abcdef.log'), 'output stays')
    const { journal, entries } = RecordJournal.open(dir)
    journal.close()
    expect(states(entries)).toEqual({ '0123456789abcdef': 'succeeded' })
    expect(fs.readdirSync(dir).sort()).toEqual(['0123456789abcdef.log', JOURNAL_NAME])
  })

  it('starts even when it cannot rewrite itself, and goes on appending', () => {
    const { journal } = RecordJournal.open(dir)
    journal.append('a', line('a', 'running'))
    journal.close()
    fs.appendFileSync(path.join(dir, JOURNAL_NAME), line('b', 'pending').slice(0, 15))
    // something in the way of the rewrite's temporary file
    fs.mkdirSync(path.join(dir, `${JOURNAL_NAME}.tmp`))
    const { journal: j2, entries } = RecordJournal.open(dir)
    expect(states(entries)).toEqual({ a: 'running' })
    j2.append('a', line('a', 'succeeded'))
    j2.close()
    fs.rmdirSync(path.join(dir, `${JOURNAL_NAME}.tmp`))
    const { journal: j3, entries: e3 } = RecordJournal.open(dir)
    j3.close()
    expect(states(e3)).toEqual({ a: 'succeeded' })
  })

  it('compacts once it holds many more lines than records, keeping the last line of each', () => {
    const { journal } = RecordJournal.open(dir)
    journal.append('b', line('b', 'pending'))
    for (let i = 0; i < 5000; i++) journal.append('a', line('a', `step-${i}`))
    journal.drop('b')
    journal.append('c', line('c', 'queued'))
    // read back from the file, before and after another compaction
    expect((journal.read('a')!.record as { state: string }).state).toBe('step-4999')
    expect(journal.read('b')).toBeUndefined()
    for (let i = 0; i < 5000; i++) journal.append('c', line('c', `step-${i}`))
    expect((journal.read('a')!.record as { state: string }).state).toBe('step-4999')
    expect(journal.readMany(['a', 'c', 'b']).map((e) => (e.record as { state: string }).state).sort()).toEqual(['step-4999', 'step-4999'])
    journal.close()
    expect(lines().length).toBeLessThan(5000)
    const { journal: again, entries } = RecordJournal.open(dir)
    again.close()
    // a record dropped is left out of the compaction
    expect(states(entries)).toEqual({ a: 'step-4999', c: 'step-4999' })
  })

  it('reads many records back in one pass, lines of any length', () => {
    const { journal } = RecordJournal.open(dir)
    const long = 'x'.repeat(10_000)
    for (let i = 0; i < 200; i++) journal.append(`t${i}`, JSON.stringify({ record: { id: `t${i}`, state: i % 2 === 0 ? long : 'short' } }))
    const ids = Array.from({ length: 200 }, (_, i) => `t${i}`)
    expect(journal.readMany(ids)).toHaveLength(200)
    expect((journal.read('t10')!.record as { state: string }).state).toBe(long)
    expect(journal.records).toBe(200)
    journal.close()
  })
})
