import { describe, it, expect } from 'vitest'
import { getEventListeners } from 'node:events'
import { linkedSignal } from '../../src/common/abort.js'

describe('linkedSignal', () => {
  it('leaves nothing in a long-lived parent once disposed, however many were linked', () => {
    const parent = new AbortController()
    for (let i = 0; i < 1000; i++) {
      const own = new AbortController()
      const l = linkedSignal([parent.signal, own.signal], 60_000)
      l.dispose()
      expect(getEventListeners(own.signal, 'abort')).toHaveLength(0)
    }
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0)
  })

  it('aborts with the reason of the parent that aborted, and unlinks from the others', () => {
    const a = new AbortController()
    const b = new AbortController()
    const l = linkedSignal([a.signal, undefined, b.signal])
    b.abort(new Error('b went'))
    expect(l.signal.aborted).toBe(true)
    expect((l.signal.reason as Error).message).toBe('b went')
    expect(getEventListeners(a.signal, 'abort')).toHaveLength(0)
  })

  it('is aborted from the start when a parent already is', () => {
    const a = new AbortController()
    a.abort('gone')
    expect(linkedSignal([a.signal]).signal.reason).toBe('gone')
  })

  it('times out as AbortSignal.timeout does', async () => {
    const parent = new AbortController()
    const l = linkedSignal([parent.signal], 5)
    await new Promise<void>((resolve) => { l.signal.addEventListener('abort', () => { resolve() }) })
    expect((l.signal.reason as DOMException).name).toBe('TimeoutError')
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0)
  })

  it('a disposed signal never aborts', () => {
    const parent = new AbortController()
    const l = linkedSignal([parent.signal])
    l.dispose()
    parent.abort()
    expect(l.signal.aborted).toBe(false)
  })
})
