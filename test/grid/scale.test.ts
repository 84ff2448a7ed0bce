/**
 * Issue 14: sixteen members on one address, fifteen of them joining through the first at the
 * same moment. Before the fix every view held all sixteen after ~28 s and fell to its own
 * agent by ~50 s, for good: gossipsub graylisted peers that share an IP address. Here the full
 * view must form and then hold for a minute, with one connection per pair, and nothing in the
 * logs saying a member was dropped or graylisted.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { Grid } from '../../src/grid/index.js'
import { waitFor } from '../helpers/wait.js'
import { Harness } from './harness.js'

const N = 16
const HOLD_MS = 60_000

const h = new Harness()
afterEach(async () => { await h.cleanup() })

describe('a grid of 16 members behind one address', () => {
  it('forms a full view that holds for 60 s, one connection per pair', async () => {
    const warnings: string[] = []
    const onWarning = (msg: string): void => { warnings.push(msg) }
    const first = await h.start({ onWarning })
    const t0 = Date.now()
    const rest = await Promise.all(Array.from({ length: N - 1 }, async () => await h.start({ bootstrap: first.addrs(), onWarning })))
    const all: Grid[] = [first, ...rest]
    const full = (): boolean => all.every((g) => g.view().length === N)
    // a bound on a hang, not the figure (the scale bench measures it): the time is printed.
    // ~9 s on a calm 2-core machine; 16 members in one process on a machine loaded 5× over took past 60 s.
    await waitFor(full, `every view to hold ${N} members`, 180_000, 100)
    console.log(`${N} members in every view after ${Date.now() - t0} ms`)
    // duplicates (both sides dialled at once) are closed; a connection per pair remains
    await waitFor(() => all.every((g) => g.connectionCount() === N - 1 && g.connectedPeers().length === N - 1), `${N - 1} connections on every member`, 120_000, 200)
    const settled = warnings.length

    const h0 = Date.now()
    let checks = 0
    while (Date.now() - h0 < HOLD_MS) {
      const sizes = all.map((g) => g.view().length)
      expect(sizes, `views after ${Date.now() - h0} ms of the hold`).toEqual(sizes.map(() => N))
      checks++
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
    expect(checks).toBeGreaterThanOrEqual(30)
    for (const g of all) expect(g.connectionCount()).toBe(N - 1)
    const held = warnings.slice(settled)
    console.log(`grid warnings while forming: ${settled}, while holding: ${held.length}${held.length > 0 ? `\n${held.join('\n')}` : ''}`)
    expect(held.filter((w) => /graylisted|dropped/.test(w))).toEqual([])
  }, 420_000)
})
