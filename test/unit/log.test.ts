/** Daemon diagnostics: routine events at info, always shown; debug only when DEBUG asks. */
import { describe, it, expect, vi, afterEach } from 'vitest'
import { createLogger } from '../../src/common/log.js'

afterEach(() => { vi.restoreAllMocks() })

describe('createLogger', () => {
  it('writes info and warn lines with their level, debug only for a component DEBUG names', () => {
    const lines: string[] = []
    vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { lines.push(String(s)); return true })
    const saved = process.env.DEBUG
    process.env.DEBUG = ''
    try {
      const log = createLogger('policy')
      log.info('the owner is idle: lending again')
      log.warn('something is wrong')
      log.debug('hidden')
    } finally {
      process.env.DEBUG = saved
    }
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/ vgrid:policy info the owner is idle: lending again\n$/)
    expect(lines[1]).toMatch(/ vgrid:policy warn something is wrong\n$/)
  })
})
