/**
 * The control socket (`$VGRID_HOME/agent.sock`) between the CLI and its agent: frames of a
 * 4-byte length and a CBOR body (see common/channel.ts). The client opens with
 * `{ t: 'hello', v, client }`, the agent answers `{ t: 'hello', v, peer }` or an error, then the
 * client sends one request. Requests and replies:
 *
 * - `{ t: 'run', spec, on?, workspace? }` (workspace: `{ dir, cwd }`, the absolute root and the
 *   current directory relative to it; absent with --no-sync) → maybe `{ t: 'queued', message }` (every member that fits is
 *   busy: the run waits for one), then `{ t: 'placed', peer, host, local }`, then exec events
 *   (started, out, exit, error); the client streams exec inputs (stdin, eof, signal, resize).
 * - `{ t: 'peers' }` → `{ t: 'peers', peers: PeerView[] }`
 * - `{ t: 'status' }` → `{ t: 'status', status: AgentStatus }`
 * - `{ t: 'join-token' }` → `{ t: 'join-token', token }`
 * - any request may be answered `{ t: 'error', error: { code, message, hint } }`.
 *
 * This file is imported by the CLI: it must not import libp2p or anything heavy.
 */
import { obj, str, optStr, int, oneOf, bad } from '../../common/validate.js'
import { parseRunSpec, type RunSpec } from '../../exec/messages.js'
import type { WireError } from '../../common/errors.js'
import type { AgentStatus, PeerView } from '../../grid/types.js'
import type { WorkspaceRef } from '../../fs-sync/workspace.js'

export const CONTROL_VERSION = 1
export const SOCKET_NAME = 'agent.sock'
/** A client that has not said hello and made its request in this time is dropped. */
export const CONTROL_HANDSHAKE_TIMEOUT_MS = 5_000

export interface Hello { t: 'hello', v: number, client: string }
export interface HelloReply { t: 'hello', v: number, peer: string }

export type ControlRequest =
  | { t: 'run', spec: RunSpec, on?: string, workspace?: WorkspaceRef }
  | { t: 'peers' }
  | { t: 'status' }
  | { t: 'join-token' }

export type ControlReply =
  | HelloReply
  | { t: 'queued', message: string }
  | { t: 'placed', peer: string, host: string, local: boolean }
  | { t: 'peers', peers: PeerView[] }
  | { t: 'status', status: AgentStatus }
  | { t: 'join-token', token: string }
  | { t: 'error', error: WireError }

export function parseHello (v: unknown): Hello {
  const m = obj(v, 'hello')
  if (m.t !== 'hello') bad('expected hello')
  return { t: 'hello', v: int(m.v, 'v', 0, 2 ** 31), client: str(m.client ?? 'unknown', 'client', 64) }
}

export function parseControlRequest (v: unknown): ControlRequest {
  const m = obj(v, 'request')
  const t = oneOf(m.t, 't', ['run', 'peers', 'status', 'join-token'] as const)
  if (t === 'run') {
    const req: ControlRequest = { t: 'run', spec: parseRunSpec(m.spec) }
    const on = optStr(m.on, 'on', 256)
    if (on !== undefined) req.on = on
    if (m.workspace !== undefined && m.workspace !== null) {
      const w = obj(m.workspace, 'workspace')
      const dir = str(w.dir, 'workspace.dir', 4096)
      if (!dir.startsWith('/')) bad('workspace.dir is not absolute')
      req.workspace = { dir, cwd: str(w.cwd ?? '', 'workspace.cwd', 4096) }
    }
    return req
  }
  return { t }
}
