/**
 * exec: runs one command on this machine for a task. Spawns it (or under a pseudo-terminal),
 * streams stdout and stderr as produced with backpressure, forwards stdin, signals and window
 * size, and reports one exit status. It also keeps the ledger of what this machine lends
 * (cores, memory, GPU indexes) so a command only starts against a reservation.
 *
 * CONTRACT (implemented in this folder):
 *
 *   serveExec(channel: FrameChannel, opts: ServeExecOptions): Promise<ExecResult>
 *     Runs opts.spec; reads ExecInput messages from the channel (validated), sends ExecEvents:
 *     'started' first, then 'out' chunks (≤ MAX_DATA_CHUNK_BYTES, waiting on send() for
 *     backpressure), then exactly one 'exit' after all output has been sent, or one 'error'
 *     (ERR_SPAWN_FAILED…) if it could not start. If the channel ends or breaks before the
 *     command exits, the command's process group gets SIGTERM, then SIGKILL after
 *     KILL_GRACE_MS. Resolves when the command has exited and the channel was closed.
 *
 *   class Ledger  — see ledger.ts
 */
export * from './messages.js'
