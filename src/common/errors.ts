/**
 * Errors with a stable `code`, a message a user can act on and an optional `hint`.
 * They travel over the wire as `{ code, message, hint }` and are rebuilt from the code.
 */

export const ERROR_CODES = {
  ERR_NO_AGENT: 'no agent is running',
  ERR_AGENT_VERSION: 'the agent speaks another protocol version',
  ERR_BAD_MESSAGE: 'a malformed message was refused',
  ERR_MESSAGE_TOO_LARGE: 'a message past the size limit was refused',
  ERR_TIMEOUT: 'the operation timed out',
  ERR_NO_SUCH_PEER: 'no member of the grid matches',
  ERR_AMBIGUOUS_PEER: 'more than one member matches',
  ERR_NO_CAPACITY: 'no member has the requested resources free',
  ERR_IMPOSSIBLE_REQUEST: 'no member of the grid could ever satisfy the request',
  ERR_PEER_LOST: 'the executing peer was lost',
  ERR_TASK_NOT_FOUND: 'the member has no such task',
  ERR_AMBIGUOUS_TASK: 'more than one task matches equally well',
  ERR_UPSTREAM_FAILED: 'a task this one waits for did not end as required',
  ERR_SPAWN_FAILED: 'the command could not be started',
  ERR_BAD_TOKEN: 'the join token is not valid',
  ERR_BAD_ARGUMENT: 'a bad argument was given',
  ERR_NOT_ALLOWED: 'the member does not allow this to the one asking',
  ERR_PORT_IN_USE: 'the listen address is already in use',
  ERR_UNSAFE_PATH: 'a path would leave the workspace or pass through a symlink',
  ERR_CHUNK_HASH_MISMATCH: 'data does not match its hash',
  ERR_WORKSPACE_TOO_LARGE: 'the workspace is past a limit of workspace sync',
  ERR_NO_SPACE: 'the member has no disk space for the workspace',
  ERR_EXECUTOR_FAILED: 'the member could not prepare the command before it started',
  ERR_UNAUTHENTICATED: 'the request carries no valid token or session',
  ERR_NOT_FOUND: 'there is nothing at this address',
  ERR_METHOD_NOT_ALLOWED: 'this address does not take that method',
  ERR_HTTP_OFF: 'the agent serves no HTTP',
  ERR_UNPATCHED: 'a fix vgrid needs in its dependencies is not applied',
  ERR_INTERNAL: 'an internal error occurred'
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export interface WireError {
  code: string
  message: string
  hint?: string
}

export class VgridError extends Error {
  readonly code: ErrorCode
  readonly hint?: string

  constructor (code: ErrorCode, message?: string, hint?: string) {
    super(message ?? ERROR_CODES[code])
    this.name = 'VgridError'
    this.code = code
    if (hint !== undefined) this.hint = hint
  }

  toWire (): WireError {
    return this.hint === undefined
      ? { code: this.code, message: clipText(this.message) }
      : { code: this.code, message: clipText(this.message), hint: clipText(this.hint) }
  }
}

/** The longest message, hint or notice text a peer accepts (characters). */
export const MAX_WIRE_TEXT = 4096

/**
 * `text` cut to what a peer accepts: an error naming a path of 4,000 bytes must still arrive
 * (as the start of itself), not be refused as a malformed message.
 */
export function clipText (text: string, max = MAX_WIRE_TEXT): string {
  return text.length <= max ? text : text.slice(0, max - 1) + '…'
}

export function isErrorCode (code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code)
}

/** Rebuilds an error received from a peer or the agent; unknown codes become ERR_INTERNAL. */
export function fromWire (value: unknown): VgridError {
  if (value === null || typeof value !== 'object') return new VgridError('ERR_INTERNAL')
  const v = value as Record<string, unknown>
  const code = isErrorCode(v.code) ? v.code : 'ERR_INTERNAL'
  const message = typeof v.message === 'string' ? clipText(v.message) : undefined
  const hint = typeof v.hint === 'string' ? clipText(v.hint) : undefined
  return new VgridError(code, message, hint)
}

/** Any thrown value as a wire error; internal details stay local. */
export function toWire (err: unknown): WireError {
  if (err instanceof VgridError) return err.toWire()
  const message = err instanceof Error ? err.message : String(err)
  return { code: 'ERR_INTERNAL', message: clipText(message) }
}
