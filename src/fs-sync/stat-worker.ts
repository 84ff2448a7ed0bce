/**
 * Worker thread of stat-workers.ts: lstats a list of paths and answers with what the copy
 * check compares, packed STAT_FIELDS to a path into one transferable BigInt64Array (a path
 * that cannot be stat'ed has a mode of -1).
 */
import { parentPort } from 'node:worker_threads'
import { lstatSync } from 'node:fs'
import { STAT_FIELDS } from './stat-workers.js'
import { nameThread, THREAD_NAMES } from '../common/thread-name.js'

nameThread(THREAD_NAMES.stat)

export interface StatJob { id: number, paths: string[] }
export interface StatReply { id: number, stats: BigInt64Array }

parentPort?.on('message', (job: StatJob) => {
  const stats = new BigInt64Array(job.paths.length * STAT_FIELDS)
  for (let i = 0; i < job.paths.length; i++) {
    const o = i * STAT_FIELDS
    try {
      const st = lstatSync(job.paths[i]!, { bigint: true })
      stats[o] = st.mode
      stats[o + 1] = st.size
      stats[o + 2] = st.mtimeNs
      stats[o + 3] = st.ctimeNs
      stats[o + 4] = BigInt.asIntN(64, st.ino)
      stats[o + 5] = st.nlink
    } catch {
      stats[o] = -1n
    }
  }
  parentPort!.postMessage({ id: job.id, stats } satisfies StatReply, [stats.buffer])
})
