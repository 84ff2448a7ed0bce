/**
 * Leaving the process cleanly. process.exit drops whatever stdout and stderr still buffer
 * (pipes are asynchronous), so we first wait until both have handed everything to the OS.
 * A reader that went away (`vgrid peers | head -1`) makes writes fail with EPIPE; that is
 * not worth a crash, so the streams get an error listener from the start. (vrun's session
 * adds its own to stop the command when its output has nowhere to go.)
 */

const ignore = (): void => {}

/** Call first thing in a main: write errors on stdout/stderr no longer crash the process. */
export function guardStdio (): void {
  for (const s of [process.stdout, process.stderr]) if (!s.listeners('error').includes(ignore)) s.on('error', ignore)
}

let terminalGone = false

/**
 * Our terminal hung up (SIGHUP with a terminal on stdin or stdout): we then end as a
 * program does whose terminal closed, killed by SIGHUP. Exiting normally instead makes Node
 * 20 crash as it restores a terminal that is gone (SIGSEGV in ResetStdio, nodejs/node#51519).
 */
export function noteTerminalGone (): void {
  terminalGone = true
}

/** Exits with `code` once stdout and stderr are flushed; a closed pipe is not waited on. */
export async function exitAfterFlush (code: number): Promise<never> {
  guardStdio()
  if (terminalGone) {
    process.removeAllListeners('SIGHUP')
    process.kill(process.pid, 'SIGHUP')
    return await new Promise<never>(() => {})
  }
  await Promise.all([flush(process.stdout), flush(process.stderr)])
  process.exit(code)
}

function flush (stream: NodeJS.WriteStream): Promise<void> {
  if (stream.destroyed || !stream.writable) return Promise.resolve()
  return new Promise((resolve) => { stream.write('', () => { resolve() }) })
}
