/**
 * Waiting on conditions with a deadline instead of sleeping: the test goes on the moment the
 * condition holds, and fails with a message saying what never happened.
 */

export interface WaitOptions {
  /** Give up after this long. Default 5000 ms. */
  timeoutMs?: number
  /** Check this often. Default 20 ms. */
  intervalMs?: number
  /** What we waited for, for the error message. */
  what?: string
}

/**
 * Resolves with the first truthy value `fn` returns (it may be async). Rejects when the
 * deadline passes; an exception thrown by `fn` counts as "not yet" and is reported if it was
 * the last thing seen.
 */
export async function waitFor<T> (fn: () => T | Promise<T>, opts: WaitOptions = {}): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 5000
  const intervalMs = opts.intervalMs ?? 20
  const start = Date.now()
  let lastError: unknown
  while (true) {
    try {
      const v = await fn()
      if (v !== undefined && v !== null && v !== false && v !== 0 && v !== '') return v as NonNullable<T>
      lastError = undefined
    } catch (err) {
      lastError = err
    }
    const elapsed = Date.now() - start
    if (elapsed >= timeoutMs) {
      const what = opts.what ?? 'condition'
      const why = lastError === undefined ? '' : `; last error: ${(lastError as Error)?.message ?? String(lastError)}`
      throw new Error(`timed out after ${elapsed} ms waiting for ${what}${why}`)
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, timeoutMs - elapsed)))
  }
}
