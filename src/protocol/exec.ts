/**
 * `/vgrid/exec/1.0.0`: a submitting agent asks another member to run a command. The stream
 * opens with an `exec` request (or, for a detached run whose owner is back, `attach`); the
 * executor answers with a claim (`claimed`, agent/claim.ts) or an error, the submitter says
 * `go` or `release`, and the command's session follows (messages.ts: ExecInput up, ExecEvent
 * down). A detached run's owner ends it with `outputs-done` and `end-seen` (agent/held.ts).
 * Every message is validated on receipt: a peer can send anything.
 */
import path from 'node:path'
import { VgridError } from '../common/errors.js'
import { obj, int, str, bytes, bad } from '../common/validate.js'
import { parseRunSpec, type RunSpec } from './session.js'

export const EXEC_PROTOCOL = '/vgrid/exec/1.0.0'
/**
 * An executor refuses a request of another version. 2: every exec request is a claim first
 * (agent/claim.ts). 3: detached runs and `attach` (agent/held.ts). 4: a workspace offer may be
 * pending, its session and root following the `go` (PendingWorkspace).
 */
export const EXEC_PROTOCOL_VERSION = 4
const TASK_ID_RE = /^[0-9a-f]{16}$/

/** What the submitter exported for the executor to pull, and where its user has it (the guest sees it there). */
export interface WorkspaceOffer { session: string, root: Uint8Array, key: string, path?: string }
/**
 * A workspace still being scanned when the request went out (a vrun from a workspace scanned
 * before): the executor checks its copy meanwhile, and the session and root follow the `go`
 * as a WorkspaceReady, before any input of the command.
 */
export interface PendingWorkspace { key: string, path?: string, pending: true }
export interface WorkspaceReady { t: 'ws', session: string, root: Uint8Array }

/** `detach`: a task that lives on without its owner's stream (held.ts), not a vrun. */
export interface ExecRequest { t: 'exec', v: number, task: string, spec: RunSpec, ws?: WorkspaceOffer | PendingWorkspace, user?: string, detach?: boolean }
/** The owner is back for a detached run: `have` is how many bytes of its output it has logged. */
export interface AttachRequest { t: 'attach', v: number, task: string, have: number }

export function parseExecRequest (v: unknown): ExecRequest | AttachRequest {
  const m = obj(v, 'exec request')
  if (m.t !== 'exec' && m.t !== 'attach') bad('expected an exec request')
  const ver = int(m.v, 'v', 0, 2 ** 31)
  if (ver !== EXEC_PROTOCOL_VERSION) throw new VgridError('ERR_AGENT_VERSION', `the executor speaks exec protocol ${EXEC_PROTOCOL_VERSION}, the submitter ${ver}`)
  const task = str(m.task, 'task', 16)
  if (!TASK_ID_RE.test(task)) bad('task is not a task id')
  if (m.t === 'attach') return { t: 'attach', v: ver, task, have: int(m.have, 'have', 0, Number.MAX_SAFE_INTEGER) }
  const req: ExecRequest = { t: 'exec', v: ver, task, spec: parseRunSpec(m.spec) }
  if (m.detach === true) req.detach = true
  if (m.user !== undefined && m.user !== null) {
    const user = str(m.user, 'user', 64)
    if (!/^[\w.-]+$/.test(user)) bad('user is not a user name')
    req.user = user
  }
  if (m.ws !== undefined && m.ws !== null) {
    const w = obj(m.ws, 'ws')
    const key = str(w.key, 'ws.key', 32)
    if (!/^[0-9a-f]{32}$/.test(key)) bad('ws is not a workspace offer')
    // a detached run's workspace is never pending: its `go` may come from an owner that came back
    if (w.pending === true && req.detach !== true) req.ws = { key, pending: true }
    else req.ws = { ...parseReady(w, 'ws'), key }
    if (w.path !== undefined && w.path !== null) req.ws.path = workspacePath(w.path)
  }
  return req
}

function parseReady (w: Record<string, unknown>, what: string): { session: string, root: Uint8Array } {
  const session = str(w.session, `${what}.session`, 32)
  if (!/^[0-9a-f]{32}$/.test(session)) bad(`${what} is not a workspace offer`)
  const root = bytes(w.root, `${what}.root`, 32)
  if (root.byteLength !== 32) bad(`${what}.root is not a 32-byte hash`)
  return { session, root }
}

/** The session and root of a pending workspace, the first message after the `go`. */
export function parseWorkspaceReady (v: unknown): WorkspaceReady {
  const m = obj(v, 'workspace')
  if (m.t !== 'ws') bad('expected the workspace (ws) after go')
  return { t: 'ws', ...parseReady(m, 'ws') }
}

/** The submitter's absolute workspace path: normalized, no NUL, not the root. */
function workspacePath (v: unknown): string {
  const p = str(v, 'ws.path', 4096)
  if (!path.isAbsolute(p) || p.includes('\0') || path.normalize(p) !== p || p === '/' || p.endsWith('/')) bad('ws.path is not an absolute, normalized path')
  return p
}


/** The executor holds resources for the request (its refusal is an ExecEvent `error` instead). */
export interface ClaimedMessage { t: 'claimed', leaseMs: number }
/** The submitter's decision on a claim: run it here, or not (placed elsewhere). */
export type ClaimDecision = { t: 'go' } | { t: 'release' }
/** A detached run's owner is attached again: the replay and the session follow. */
export interface AttachedMessage { t: 'attached' }
/** A detached run's owner has the outputs (`outputs-done`), or has seen the end (`end-seen`). */
export type OwnerWord = { t: 'outputs-done' } | { t: 'end-seen' }
/** A claim's lease at most: an executor's claim naming more is malformed. */
export const MAX_CLAIM_LEASE_MS = 3_600_000

/** A claim, or undefined when the message is something else (the caller parses it as an ExecEvent). */
export function parseClaimed (v: unknown): ClaimedMessage | undefined {
  const m = obj(v, 'claim reply')
  return m.t === 'claimed' ? { t: 'claimed', leaseMs: int(m.leaseMs, 'leaseMs', 1, MAX_CLAIM_LEASE_MS) } : undefined
}

export function parseClaimDecision (v: unknown): ClaimDecision {
  const m = obj(v, 'claim answer')
  if (m.t === 'go' || m.t === 'release') return { t: m.t }
  return bad('expected go or release')
}
