/**
 * Issue 14: sixteen members on one address, fifteen of them joining through the first at the
 * same moment. Before the fix every view held all sixteen after ~28 s and fell to its own
 * agent by ~50 s, for good: gossipsub graylisted peers that share an IP address. Here the full
 * view must form, stay whole through a minute (a member a starved process did not hear from in
 * time may leave a view for a moment, and must be back: printed, not a failure), end with one
 * connection per pair, and nothing in the logs may say a member was graylisted.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
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

    // The hold: what broke in issue 14 (gossip graylisting peers behind one address, every view
    // falling to its own agent for good) never happens; a member a starved process did not hear
    // from in time (two busy loops beside a parallel suite) may leave a view for a moment, and
    // must be back. Dips are printed with the event loop's worst delay, not asserted.
    const lag = monitorEventLoopDelay({ resolution: 20 })
    lag.enable()
    const h0 = Date.now()
    let checks = 0
    let dips = 0
    let smallest = N
    while (Date.now() - h0 < HOLD_MS) {
      const sizes = all.map((g) => g.view().length)
      if (sizes.some((n) => n < N)) dips++
      smallest = Math.min(smallest, ...sizes)
      checks++
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
    lag.disable()
    console.log(`the hold: ${checks} checks, ${dips} with a view short of ${N} (smallest ${smallest}); the event loop's worst delay ${Math.round(lag.max / 1e6)} ms`)
    await waitFor(full, `every view to hold ${N} members again after the hold`, 60_000, 200)
    await waitFor(() => all.every((g) => g.connectionCount() === N - 1), `${N - 1} connections on every member after the hold`, 60_000, 200)
    const held = warnings.slice(settled)
    console.log(`grid warnings while forming: ${settled}, while holding: ${held.length}${held.length > 0 ? `\n${held.join('\n')}` : ''}`)
    expect(warnings.filter((w) => /graylisted/.test(w))).toEqual([])
  }, 420_000)
})
