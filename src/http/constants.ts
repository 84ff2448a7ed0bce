/** The HTTP API's limits, timeouts and names, with their units. */

/** The API's path prefix; bump it with a breaking change. */
export const API_PREFIX = '/api/v1'
/** `$VGRID_HOME/http.token`: the bearer token of the API (0600). */
export const TOKEN_FILE = 'http.token'
/** Random bytes of a token, a session id and a login code. */
export const SECRET_BYTES = 32
/** A body larger than this is refused (413) before it is read whole. */
export const MAX_BODY_BYTES = 1024 * 1024
/** Of a body refused unread, at most this much is read and dropped before the connection is cut. */
export const MAX_DRAIN_BYTES = 64 * 1024 * 1024
/** The whole request line and headers must arrive in this time. */
export const HEADERS_TIMEOUT_MS = 10_000
/** A request (body included) must arrive whole in this time; SSE responses are not bound by it. */
export const REQUEST_TIMEOUT_MS = 30_000
/** An idle keep-alive connection is closed after this. */
export const KEEP_ALIVE_TIMEOUT_MS = 5_000
/** Requests that take longer than this to answer (a peer that does not answer) end in 504. */
export const ANSWER_TIMEOUT_MS = 20_000
/** A `vgrid ui` login code works once, within this time. */
export const LOGIN_CODE_TTL_MS = 60_000
/** Unused login codes kept at most (older ones are dropped). */
export const MAX_LOGIN_CODES = 64
/** A dashboard session lasts this long, or until the agent restarts. */
export const SESSION_TTL_MS = 7 * 24 * 3600_000
/** Sessions kept at most; the oldest is dropped first. */
export const MAX_SESSIONS = 256
/** The session cookie's name; the port is added, as cookies do not keep ports apart. */
export const SESSION_COOKIE = 'vgrid_session'
/** An SSE stream sends a comment this often, so proxies and browsers see it alive. */
export const SSE_HEARTBEAT_MS = 15_000
/** Server-Sent Event streams open at once at most (each holds a control request). */
export const MAX_SSE_STREAMS = 64
/** How long a stopping agent gives open responses before it cuts them. */
export const CLOSE_GRACE_MS = 1_000
/** Bytes of events a client may leave unread before its stream is closed (it may reconnect). */
export const MAX_SSE_BUFFER_BYTES = 8 * 1024 * 1024
