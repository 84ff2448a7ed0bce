/**
 * A task's output, written here: its stdout to ours and its stderr to ours, in the order it
 * was made, read from the agent only as fast as our stdout takes it. `vgrid task log` and
 * `vbatch -f` both print logs this way.
 */
import { taskLog } from '../agent/control/client.js'
import { drained } from '../exec/stream-util.js'
import type { TaskRecord } from '../agent/tasks/types.js'

export type Out = NodeJS.WritableStream & { isTTY?: boolean, columns?: number }

export interface LogIo {
  home: string
  stdout: Out
  stderr: Out
  /** Names the command in the hello (`vgrid`, `vbatch`). */
  client: string
}

export interface LogResult {
  /** The record at the end of the log; absent when the stream was cut short. */
  task?: TaskRecord
  /** Our stdout was closed (`vgrid task log ID | head`): we stopped reading. */
  brokenPipe: boolean
}

/** Bytes of the log written so far (stdout and stderr together): a second read after a reconnect skips them. */
export interface LogPosition { bytes: number }

/**
 * Streams the log of `id` (with `follow`, until the task ends). `signal` stops it early (the
 * task is not touched); agent failures are thrown as VgridErrors.
 */
export async function printTaskLog (id: string, opts: { follow: boolean, stderrOnly: boolean, signal?: AbortSignal, workspace?: string, position?: LogPosition }, io: LogIo): Promise<LogResult> {
  const at = opts.position ?? { bytes: 0 }
  let skip = at.bytes
  const stop = new AbortController()
  const onAbort = (): void => { stop.abort() }
  opts.signal?.addEventListener('abort', onAbort)
  if (opts.signal?.aborted === true) stop.abort()
  let brokenPipe = false
  const onOutError = (): void => { brokenPipe = true; stop.abort() }
  io.stdout.on('error', onOutError)
  try {
    const req = { id, follow: opts.follow, stderrOnly: opts.stderrOnly, ...(opts.workspace !== undefined ? { workspace: opts.workspace } : {}) }
    for await (const frame of taskLog(io.home, req, { client: io.client, signal: stop.signal })) {
      if (frame.t === 'task') return { task: frame.task, brokenPipe }
      let data = frame.data
      if (skip > 0) {
        // Written before the agent went away: the log is the same file, so the same bytes come first.
        const n = Math.min(skip, data.byteLength)
        skip -= n
        data = data.subarray(n)
        if (data.byteLength === 0) continue
      }
      at.bytes += data.byteLength
      await write(frame.fd === 2 ? io.stderr : io.stdout, data, stop.signal)
      if (stop.signal.aborted) break
    }
    return { brokenPipe }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
    io.stdout.off('error', onOutError)
  }
}

/** Writes a chunk and waits for the stream to take it (or for the stop). */
async function write (stream: Out, data: Uint8Array, signal: AbortSignal): Promise<void> {
  if ((stream as { destroyed?: boolean }).destroyed === true) return
  if (stream.write(data)) return
  await drained(stream, signal)
}
