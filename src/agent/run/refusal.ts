/**
 * Which failures before a command's start are the executing member's (it refuses the run: no
 * disk space, its sync or sandbox failed; the run goes elsewhere without spending a retry) and
 * which are the run's own (the same on any member).
 */
import { VgridError } from '../../common/errors.js'
import { ClaimReleased } from '../claim.js'
import { shortPeerId } from '../../common/peer-id.js'

/** Errors that would be the same on any member: the run's own fault, not this member's. */
const NOT_A_REFUSAL: ReadonlySet<string> = new Set(['ERR_BAD_ARGUMENT', 'ERR_UNSAFE_PATH', 'ERR_WORKSPACE_TOO_LARGE', 'ERR_BAD_MESSAGE', 'ERR_NOT_ALLOWED', 'ERR_NO_CAPACITY', 'ERR_PEER_LOST', 'ERR_CHUNK_HASH_MISMATCH', 'ERR_AGENT_VERSION'])

/**
 * A failure between the claim and the command's start (no disk space, the sync, the
 * sandbox) as this member's refusal: ERR_NO_SPACE or ERR_EXECUTOR_FAILED, naming the member,
 * so the submitter places the run elsewhere without spending a retry, and says where and
 * why if none can take it. The run's own faults pass unchanged.
 */
export function refusalOf (ctx: { host: string, home: string, grid: { peerId: string } }, err: unknown): unknown {
  if (err instanceof ClaimReleased) return err
  const who = `${ctx.host} (${shortPeerId(ctx.grid.peerId)})`
  const errno = (err as NodeJS.ErrnoException)?.code
  if (err instanceof VgridError && err.code === 'ERR_NO_SPACE') return new VgridError('ERR_NO_SPACE', `${who} has no space for this workspace (${err.message})`, err.hint)
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    return new VgridError('ERR_NO_SPACE', `${who} has no space for this workspace (${(err as Error).message}, in ${ctx.home})`, 'free space on that disk, or move its VGRID_HOME to a larger one')
  }
  if (err instanceof VgridError && NOT_A_REFUSAL.has(err.code)) return err
  return new VgridError('ERR_EXECUTOR_FAILED', `${who} could not prepare the command: ${err instanceof Error ? err.message : String(err)}`,
    err instanceof VgridError ? err.hint : undefined)
}

/**
 * Whether the executor's error before the start is its refusal to run: the run goes
 * elsewhere. ERR_SPAWN_FAILED is the executor's too (stopping, out of processes): a command
 * that does not exist there is an exit status (127), not an error.
 */
export function isRefusal (err: unknown): err is VgridError {
  return err instanceof VgridError && (err.code === 'ERR_NO_SPACE' || err.code === 'ERR_EXECUTOR_FAILED' || err.code === 'ERR_SPAWN_FAILED')
}

