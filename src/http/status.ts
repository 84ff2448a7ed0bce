/**
 * The HTTP status of each error code. Bad input is 4xx, always: a 500 means a fault of the
 * agent, never of the request. The body carries the code, the message and the hint exactly
 * as the CLI prints them.
 */
import { toWire, type ErrorCode, type WireError } from '../common/errors.js'

export const HTTP_STATUS: Record<ErrorCode, number> = {
  ERR_BAD_ARGUMENT: 400,
  ERR_BAD_MESSAGE: 400,
  ERR_BAD_TOKEN: 400,
  ERR_UNSAFE_PATH: 400,
  ERR_AMBIGUOUS_PEER: 400,
  ERR_AMBIGUOUS_TASK: 400,
  ERR_UNAUTHENTICATED: 401,
  ERR_NOT_ALLOWED: 403,
  ERR_TASK_NOT_FOUND: 404,
  ERR_NOT_FOUND: 404,
  ERR_METHOD_NOT_ALLOWED: 405,
  // a dependency that can no longer be met: the request conflicts with the tasks' state
  ERR_UPSTREAM_FAILED: 409,
  ERR_MESSAGE_TOO_LARGE: 413,
  ERR_WORKSPACE_TOO_LARGE: 413,
  // well-formed, but no member could ever run it, or `on` names no member
  ERR_IMPOSSIBLE_REQUEST: 422,
  ERR_NO_SUCH_PEER: 422,
  ERR_INTERNAL: 500,
  ERR_AGENT_VERSION: 500,
  ERR_PORT_IN_USE: 500,
  ERR_UNPATCHED: 500,
  ERR_PEER_LOST: 502,
  ERR_SPAWN_FAILED: 502,
  ERR_EXECUTOR_FAILED: 502,
  ERR_CHUNK_HASH_MISMATCH: 502,
  ERR_NO_CAPACITY: 503,
  ERR_NO_AGENT: 503,
  ERR_HTTP_OFF: 503,
  ERR_TIMEOUT: 504,
  ERR_NO_SPACE: 507
}

/** The status and the JSON body for any thrown value. */
export function errorResponse (err: unknown): { status: number, body: { error: WireError } } {
  const wire = toWire(err)
  const status = Object.hasOwn(HTTP_STATUS, wire.code) ? HTTP_STATUS[wire.code as ErrorCode] : 500
  return { status, body: { error: wire } }
}
