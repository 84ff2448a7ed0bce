/**
 * Worker thread of file-writer.ts: writes small files (temp, mode, mtime, rename over the
 * target; in a copy that started empty, the target itself) in batches, so that creating
 * them, most of a small-file sync's time on ext4, runs beside the main thread instead of on
 * it.
 */
import { parentPort } from 'node:worker_threads'
import { renameSync, unlinkSync } from 'node:fs'
import { isCode, writeSmallData, writeSmallDataAt } from './write-file.js'
import { nameThread, THREAD_NAMES } from '../common/thread-name.js'

nameThread(THREAD_NAMES.write)

export interface SmallFile {
  /** The target's directory, vouched for by the caller's safe resolver, and the target. */
  dir: string
  abs: string
  data: Uint8Array
  createMode: number
  mode: number
  mtimeMs: number
  /** The copy started empty this sync: the file is created at `abs` itself (writeSmallDataAt). */
  fresh?: boolean
}

/**
 * Per file: null (written and in place), `tmp` (written, but something sits at the target
 * that a rename cannot replace: the caller clears it), or the error.
 */
export type SmallFileResult = null | { tmp: string } | { error: { code?: string, message: string } }

export interface WriteJob { id: number, files: SmallFile[] }
export interface WriteReply { id: number, results: SmallFileResult[] }

function writeOne (f: SmallFile): SmallFileResult {
  let tmp: string
  try {
    // no temp and no rename where nothing can be in the way (what is there after all: as below)
    if (f.fresh === true && writeSmallDataAt(f.abs, f.data, f.mtimeMs, f.createMode, f.mode)) return null
    tmp = writeSmallData(f.dir, f.data, f.mtimeMs, f.createMode, f.mode)
  } catch (err) {
    return { error: { code: (err as NodeJS.ErrnoException).code, message: (err as Error).message } }
  }
  try {
    renameSync(tmp, f.abs)
    return null
  } catch (err) {
    if (isCode(err, 'EISDIR') || isCode(err, 'ENOTEMPTY') || isCode(err, 'EEXIST') || isCode(err, 'ENOTDIR')) return { tmp }
    try { unlinkSync(tmp) } catch {}
    return { error: { code: (err as NodeJS.ErrnoException).code, message: (err as Error).message } }
  }
}

parentPort?.on('message', (job: WriteJob) => {
  parentPort!.postMessage({ id: job.id, results: job.files.map(writeOne) } satisfies WriteReply)
})
