/**
 * The suite's one way to wait: on a condition, with a deadline that only bounds a hang (the
 * test goes on the moment the condition holds, and fails saying what never happened). Never
 * a fixed sleep, and never a deadline that measures speed: figures belong to `npm run bench`.
 */

/**
 * Resolves with the first value `fn` returns (it may be async) that is not undefined, null or
 * false. Rejects once `timeoutMs` has passed; an exception thrown by `fn` counts as "not yet"
 * and is reported if it was the last thing seen.
 */
export async function waitFor<T> (fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, what: string, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined && v !== null && v !== false) return v
      lastErr = undefined
    } catch (err) {
      lastErr = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr !== undefined ? `: ${String(lastErr)}` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
