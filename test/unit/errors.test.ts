import { describe, it, expect } from 'vitest'
import { VgridError, toWire, clipText, MAX_WIRE_TEXT } from '../../src/common/errors.js'
import { parseExecEvent } from '../../src/protocol/session.js'

describe('errors on the wire', () => {
  it('arrive cut to the limit a peer accepts, not refused as malformed', () => {
    const path = 'x/'.repeat(3000)
    const err = new VgridError('ERR_WORKSPACE_TOO_LARGE', `a path is too long: ${path}`, `ignore ${path}`)
    const wire = err.toWire()
    expect(wire.message.length).toBe(MAX_WIRE_TEXT)
    expect(wire.message.endsWith('…')).toBe(true)
    expect(wire.hint!.length).toBe(MAX_WIRE_TEXT)
    const ev = parseExecEvent({ t: 'error', error: wire })
    expect(ev.t === 'error' && ev.error.message.startsWith('a path is too long: x/x/')).toBe(true)
    expect(toWire(new Error('y'.repeat(10_000))).message.length).toBe(MAX_WIRE_TEXT)
  })

  it('leave short texts as they are', () => {
    expect(clipText('short')).toBe('short')
    expect(clipText('a'.repeat(MAX_WIRE_TEXT))).toBe('a'.repeat(MAX_WIRE_TEXT))
  })
})
