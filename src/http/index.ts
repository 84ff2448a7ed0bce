/**
 * The agent over HTTP: a REST API (`/api/v1`, described by an OpenAPI document) and the
 * dashboard's files, served by the agent on 127.0.0.1:7322 by default (TLS required anywhere
 * else). Every API request is a control request run through the agent's own handler, so the
 * API can do what the owner's CLI can (submit, list, follow, cancel, read the grid) and no
 * more, with the same checks and the same errors. Access takes the token of
 * `$VGRID_HOME/http.token`, or a browser session opened by a one-time `vgrid ui` link.
 */
export { startHttpServer, type HttpServer, type HttpServerInit } from './server.js'
export { parseHttpAddress, isLoopback, dashboardTaskUrl, DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT, type HttpAddress } from './address.js'
export type { ControlHandler } from './control-call.js'
export type { MembersSource, TaskChanges } from './events.js'
export { OPENAPI } from './openapi.js'
export { API_PREFIX, TOKEN_FILE } from './constants.js'
