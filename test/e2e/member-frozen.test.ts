/**
 * A member that freezes (SIGSTOP: its sockets stay open, it never answers again) leaves every
 * view once the grid's expiry has passed, and a run on it fails saying so. It waits out the
 * product's 12 s expiry, so it runs with the heavy suites (the fault suites).
 */
import { describe, it, expect, afterEach } from 'vitest'
import { startGrid, stopAll, peersOf, waitFor, tempDir, startCli } from '../helpers/procs.js'

afterEach(async () => { await stopAll() })

describe('a frozen member', () => {
  it('drops a member that stops answering within 15 s, and a run on it fails saying so', async () => {
    const [a, b, c] = await startGrid(3)
    const ws = tempDir('vgrid-ws-')
    const run = startCli('vrun', ['--on', c.peer, 'sh', '-c', 'echo running; exec sleep 60'], { home: a.home, cwd: ws, timeoutMs: 40_000 })
    await waitFor(() => run.stdout().includes('running'), 'the command to run on c', 20_000, 50)
    // Frozen, not stopped: its sockets stay open, it just never answers again.
    c.proc.kill('SIGSTOP')
    const frozenAt = Date.now()
    try {
      await Promise.all([a, b].map(async (x) => await waitFor(async () => !(await peersOf(x)).some((p) => p.peer === c.peer), 'c to leave the views', 20_000, 200)))
      // When it expires is view.test.ts's (an injected clock); here only that it does, and how long it took.
      console.log(`a frozen member left both views ${Date.now() - frozenAt} ms after it froze`)
      const r = await run.done
      expect(r.code).not.toBe(0)
      // Whichever notices first, the view or the connection, the user is told what happened.
      expect(r.stderr).toMatch(/lost \S+ \(…\w+\) while the command ran/)
    } finally {
      c.proc.kill('SIGCONT')
    }
  }, 60_000)
})
