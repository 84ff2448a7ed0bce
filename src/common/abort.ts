/**
 * A signal that aborts when any of its parents does, or after a timeout, and that can be
 * unlinked once the work it guards is over.
 *
 * Why not AbortSignal.any: Node 20 keeps, in each parent signal, a WeakRef to every signal
 * any() ever derived from it, and drops them only when that parent aborts. Derived from a
 * long-lived parent (the agent's shutdown signal, the grid node's lifetime), that is one
 * entry (~60 bytes) per command run, stream opened or peer dialled, for as long as the agent
 * runs: the soak benchmark found ~5,600 of them after 3,000 tasks on one agent.
 */

export interface LinkedSignal {
  readonly signal: AbortSignal
  /** Unlinks from the parents and stops the timer; the signal no longer aborts. Idempotent. */
  dispose: () => void
}

/** The reason AbortSignal.timeout gives, so callers that look at it see the same. */
function timeoutReason (): DOMException {
  return new DOMException('The operation was aborted due to timeout', 'TimeoutError')
}

export function linkedSignal (parents: ReadonlyArray<AbortSignal | undefined>, timeoutMs?: number): LinkedSignal {
  const controller = new AbortController()
  const live = parents.filter((p): p is AbortSignal => p !== undefined)
  const already = live.find((p) => p.aborted)
  if (already !== undefined) {
    controller.abort(already.reason)
    return { signal: controller.signal, dispose: () => {} }
  }
  let timer: NodeJS.Timeout | undefined
  const dispose = (): void => {
    clearTimeout(timer)
    for (const p of live) p.removeEventListener('abort', onAbort)
  }
  function onAbort (this: AbortSignal): void {
    dispose()
    controller.abort(this.reason)
  }
  for (const p of live) p.addEventListener('abort', onAbort, { once: true })
  if (timeoutMs !== undefined) {
    timer = setTimeout(() => { dispose(); controller.abort(timeoutReason()) }, timeoutMs)
    // as AbortSignal.timeout: a pending timeout does not keep the process alive
    timer.unref()
  }
  return { signal: controller.signal, dispose }
}
