/**
 * Runs of an expensive, read-only job (a workspace scan) shared between callers without
 * handing anyone a stale result: each caller gets a run that started after it called. A
 * caller that comes while a run is under way waits for the next one, and every caller that
 * comes before that next run starts shares it. A burst of N callers costs two runs, not N.
 */
export class FreshRuns<T> {
  private readonly queues = new Map<string, { running?: Promise<T>, next?: Promise<T> }>()

  async run (key: string, job: () => Promise<T>): Promise<T> {
    let q = this.queues.get(key)
    if (q === undefined) {
      q = {}
      this.queues.set(key, q)
    }
    if (q.next !== undefined) return await q.next
    const queue = q
    const before = queue.running ?? Promise.resolve()
    const next: Promise<T> = before.catch(() => {}).then(async () => {
      queue.next = undefined
      queue.running = next
      return await job()
    }).finally(() => {
      if (queue.running === next) queue.running = undefined
      if (queue.running === undefined && queue.next === undefined) this.queues.delete(key)
    })
    queue.next = next
    return await next
  }
}
