/** Submission order and request shapes, shared by the placers that keep queues. */
import type { ResourceRequest } from '../../common/resources.js'
import type { Job } from '../world.js'

/** Jobs of one shape compete for exactly the same members; a blocked one blocks only its shape. */
export function shapeKey (req: ResourceRequest): string {
  return `${req.cpus}/${req.gpus}/${req.gpuModel ?? ''}`
}

/** Inserts `job` into `queue` (kept in submission order); a resubmitted job gets its old place back. */
export function insertInOrder (queue: Job[], job: Job): void {
  let i = queue.length
  while (i > 0 && queue[i - 1].spec.id > job.spec.id) i--
  queue.splice(i, 0, job)
}
