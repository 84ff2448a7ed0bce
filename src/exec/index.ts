/**
 * exec: runs one command on this machine for a task. `serveExec` spawns it (or runs it under
 * a pseudo-terminal), streams stdout and stderr as they are produced with backpressure,
 * forwards stdin, signals and window size, and reports one exit status as a shell would; the
 * command leads its own process group, and is killed (gracefully, then SIGKILL) when the
 * submitter goes away or the agent stops. The `Ledger` keeps what this machine lends (cores,
 * memory, GPU indexes) so a command only starts against a reservation.
 *
 * Choices a caller should know:
 * - A malformed input ends the session: the command is cancelled and the last event is an
 *   `error` (ERR_BAD_MESSAGE) instead of `exit`. The agent's relay does the same for remote runs.
 * - Stdin is buffered up to STDIN_HIGH_WATER_BYTES for a command that does not read it; past
 *   that inputs wait, signals included, until it reads (destroying the channel still kills).
 * - When the command's leading process exits, what it left running in its process group gets
 *   SIGTERM (SIGHUP under a terminal), then SIGKILL after the grace time.
 * - Without a terminal the command's stdin, stdout and stderr are real pipes (FIFOs made by
 *   fifos.ts), so `/dev/stdout` opens and a reader gone means SIGPIPE, as in a shell.
 * - serveExec does not close the channel: its owner does, after serveExec resolves.
 * - exec does not import grid: `LentGpu` is structurally the grid's `GpuInfo`.
 */
export * from '../protocol/session.js'
export { serveExec } from './serve.js'
export { Ledger, type LedgerOffer, type Reservation, type LedgerSnapshot } from './ledger.js'
export type { ServeExecOptions, ExecResult, LentGpu } from './types.js'
export { gpuEnv } from './environment.js'
export { FifoMaker } from './fifos.js'
export { KILL_GRACE_MS, STDIN_HIGH_WATER_BYTES } from './constants.js'
