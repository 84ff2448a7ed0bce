import { describe, it, expect } from 'vitest'
import { parseVgridArgs } from '../../src/cli/vgrid.js'
import { vgridUsageError } from '../helpers/cli-usage.js'

const usageError = vgridUsageError

describe('vgrid task', () => {
  it('parses each action with its options', () => {
    expect(parseVgridArgs(['task', 'list'])).toEqual({ kind: 'task', action: 'list', all: false, json: false })
    expect(parseVgridArgs(['task', 'list', '--all', '--json'])).toEqual({ kind: 'task', action: 'list', all: true, json: true })
    expect(parseVgridArgs(['task', 'show', '0123456789abcdef', '--json'])).toEqual({ kind: 'task', action: 'show', id: '0123456789abcdef', json: true })
    expect(parseVgridArgs(['task', 'log', 'ABC123'])).toEqual({ kind: 'task', action: 'log', id: 'abc123', follow: false, stderrOnly: false })
    expect(parseVgridArgs(['task', 'log', '--follow', '--stderr-only', 'abc'])).toEqual({ kind: 'task', action: 'log', id: 'abc', follow: true, stderrOnly: true })
    expect(parseVgridArgs(['task', 'cancel', 'abc'])).toEqual({ kind: 'task', action: 'cancel', id: 'abc' })
    expect(parseVgridArgs(['task', 'wait', '--', 'abc'])).toEqual({ kind: 'task', action: 'wait', id: 'abc' })
  })

  it('takes a task name where an id goes, as typed (case kept; NAME[i] for a shard)', () => {
    expect(parseVgridArgs(['task', 'wait', 'xyz'])).toEqual({ kind: 'task', action: 'wait', id: 'xyz' })
    expect(parseVgridArgs(['task', 'log', 'Train[2]'])).toMatchObject({ id: 'Train[2]' })
    // hex digits are an id (prefix), lower-cased; 17 of them can only be a name
    expect(parseVgridArgs(['task', 'show', 'ABC'])).toMatchObject({ id: 'abc' })
    expect(parseVgridArgs(['task', 'show', '0123456789ABCDEF0'])).toMatchObject({ id: '0123456789ABCDEF0' })
  })

  it('keeps an all-digit id as typed (cac would make it a number)', () => {
    expect(parseVgridArgs(['task', 'log', '-f', '0123456789'])).toMatchObject({ id: '0123456789', follow: true })
    expect(parseVgridArgs(['task', 'show', '1e10'])).toMatchObject({ id: '1e10' })
  })

  it('--help explains the actions', () => {
    const help = parseVgridArgs(['task', 'list', '--help'])
    expect(help.kind).toBe('help')
    const text = (help as { text: string }).text
    for (const a of ['list', 'show ID', 'log ID', 'cancel ID', 'wait ID']) expect(text).toContain(`  ${a}`)
    expect(text).toContain('--stderr-only')
    expect(text).not.toMatch(/ +\n/)
    expect((parseVgridArgs(['--help']) as { text: string }).text).toContain('task <action> [id]')
  })

  it.each([
    [['task'], 'vgrid task needs an action: list, show, log, cancel or wait'],
    [['task', 'frob'], 'unknown task action frob (expected list, show, log, cancel or wait)'],
    [['task', 'show'], 'vgrid task show needs a task ID or name'],
    [['task', 'wait', 'a b'], '"a b" is neither a task ID nor a task name'],
    [['task', 'log', 'tab\there'], '"tab\\there" is neither a task ID nor a task name'],
    [['task', 'list', 'abc'], 'unexpected argument abc'],
    [['task', 'list', '--all', '012'], 'unexpected argument 012'],
    [['task', 'cancel', 'abc', 'def'], 'unexpected argument def'],
    [['task', 'log', '--json', 'abc'], 'option --json does not apply to vgrid task log'],
    [['task', 'list', '-f'], 'option -f does not apply to vgrid task list'],
    [['task', 'wait', '--all', 'abc'], 'option --all does not apply to vgrid task wait'],
    [['task', 'list', '--bogus'], 'unknown option --bogus']
  ])('%j → %s', (argv, message) => {
    const err = usageError(argv)
    expect(err.message).toBe(message)
    expect(err.usage).toMatch(/^usage: vgrid task /)
  })
})
