/**
 * Runs `fn` over `items` with at most `limit` at once, in order of start. On the first error
 * no new item starts; the ones in flight finish (so no temp file is abandoned mid-write) and
 * that first error is thrown.
 */
export async function runPool<T> (items: readonly T[], limit: number, fn: (item: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let next = 0
  let failure: { err: unknown } | undefined
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const item = items[next++]!
      try {
        signal?.throwIfAborted()
        await fn(item)
      } catch (err) {
        failure ??= { err }
      }
    }
  }
  const workers = Math.max(1, Math.min(Math.floor(limit), items.length))
  await Promise.all(Array.from({ length: workers }, worker))
  if (failure !== undefined) throw failure.err
}
