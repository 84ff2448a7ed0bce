/**
 * The routes of `/api/v1`. Each one is a control request run through the agent's own handler
 * (control-call.ts), and its reply turned into JSON, text or Server-Sent Events.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { VgridError } from '../common/errors.js'
import { withTimeout } from '../common/timeout.js'
import type { ControlReply } from '../protocol/control.js'
import { TASK_STATES, type TaskRecord, type TaskState } from '../agent/tasks/types.js'
import { ANSWER_TIMEOUT_MS, API_PREFIX } from './constants.js'
import { controlCall, nextReply, openControl, type ControlHandler } from './control-call.js'
import { submitRequest } from './batch.js'
import { streamEvents, taskSummary, type MembersSource, type TaskChanges } from './events.js'
import { OPENAPI } from './openapi.js'
import { BASE_HEADERS, HttpError, readBody, readJson, sendJson } from './request.js'
import { SseStream } from './sse.js'

export interface ApiDeps {
  handle: ControlHandler
  grid: MembersSource
  tasks: TaskChanges
  /** The dashboard's address of a task, for the submit reply. */
  taskUrl: (id: string) => string
  /** Opens an SSE stream, or refuses (too many open). */
  openSse: (res: ServerResponse) => SseStream
}

/** A route: method, path pattern (`{id}` a segment), handler. */
interface Route {
  method: 'GET' | 'POST'
  parts: string[]
  run: (c: Call) => Promise<void>
}

interface Call {
  req: IncomingMessage
  res: ServerResponse
  params: Record<string, string>
  query: URLSearchParams
  deps: ApiDeps
}

const routes: Route[] = []
function route (method: Route['method'], pattern: string, run: Route['run']): void {
  routes.push({ method, parts: pattern.split('/').filter(Boolean), run })
}

/** Whether a route serves `path` with some method: the path is known, the method may not be. */
function match (path: string): Array<{ route: Route, params: Record<string, string> }> {
  const segs = path.split('/').filter(Boolean)
  const out: Array<{ route: Route, params: Record<string, string> }> = []
  for (const r of routes) {
    if (r.parts.length !== segs.length) continue
    const params: Record<string, string> = {}
    let ok = true
    for (let i = 0; i < segs.length && ok; i++) {
      const p = r.parts[i]!
      if (p.startsWith('{')) {
        try {
          params[p.slice(1, -1)] = decodeURIComponent(segs[i]!)
        } catch {
          throw new VgridError('ERR_BAD_ARGUMENT', 'the path holds a malformed %-escape')
        }
      } else ok = p === segs[i]
    }
    if (ok) out.push({ route: r, params })
  }
  return out
}

/** Serves one request under API_PREFIX (authentication already checked). */
export async function serveApi (req: IncomingMessage, res: ServerResponse, url: URL, deps: ApiDeps): Promise<void> {
  const path = url.pathname.slice(API_PREFIX.length)
  const found = match(path)
  if (found.length === 0) throw new VgridError('ERR_NOT_FOUND', `no such API route: ${url.pathname.slice(0, 200)}`, `see ${API_PREFIX}/openapi.json`)
  const hit = found.find((f) => f.route.method === req.method)
  if (hit === undefined) {
    const allow = [...new Set(found.map((f) => f.route.method))].join(', ')
    res.setHeader('Allow', allow)
    throw new HttpError(405, 'ERR_METHOD_NOT_ALLOWED', `${url.pathname.slice(0, 200)} takes ${allow}, not ${req.method ?? '?'}`)
  }
  await hit.route.run({ req, res, params: hit.params, query: url.searchParams, deps })
}

/** A one-shot request, bounded in time: a member that never answers is a 504, not a hang. */
async function call<T extends ControlReply['t']> (deps: ApiDeps, request: Record<string, unknown>, want: T): Promise<Extract<ControlReply, { t: T }>> {
  return await withTimeout(controlCall(deps.handle, request, want), ANSWER_TIMEOUT_MS, `the agent did not answer ${String(request.t)} in ${ANSWER_TIMEOUT_MS / 1000} s`)
}

/** Drains what is left of a body we do not read (a cancel needs none), within the cap. */
async function ignoreBody (req: IncomingMessage): Promise<void> {
  await readBody(req)
}

route('GET', '/openapi.json', async ({ res }) => { sendJson(res, 200, OPENAPI) })

route('GET', '/peers', async ({ res, deps }) => {
  const { peers } = await call(deps, { t: 'peers' }, 'peers')
  sendJson(res, 200, { peers })
})

/** `?state=running,queued`: the states asked for; an unknown one is an error, not an empty list. */
function statesOf (q: string | null): Set<TaskState> | undefined {
  if (q === null || q === '') return undefined
  const states = q.split(',').map((s) => s.trim())
  for (const s of states) {
    if (!(TASK_STATES as readonly string[]).includes(s)) {
      throw new VgridError('ERR_BAD_ARGUMENT', `state ${JSON.stringify(s.slice(0, 64))} is not a task state`, `the states are ${TASK_STATES.join(', ')}`)
    }
  }
  return new Set(states as TaskState[])
}

export function filterTasks (tasks: TaskRecord[], query: URLSearchParams): TaskRecord[] {
  const states = statesOf(query.get('state'))
  const name = query.get('name')
  const submitter = query.get('submitter')
  return tasks.filter((t) =>
    (states === undefined || states.has(t.state)) &&
    (name === null || name === '' || t.name === name) &&
    (submitter === null || submitter === '' || (t.submitter ?? t.owner) === submitter || t.user === submitter))
}

route('GET', '/tasks', async ({ res, query, deps }) => {
  statesOf(query.get('state'))
  const { tasks, unreachable } = await call(deps, { t: 'task-list', all: true }, 'task-list')
  sendJson(res, 200, { tasks: filterTasks(tasks, query), unreachable })
})

route('POST', '/tasks', async ({ req, res, deps }) => {
  const batch = submitRequest(await readJson(req))
  const { ids } = await call(deps, { t: 'batch', batch }, 'batched')
  const id = ids[0]!
  sendJson(res, 201, { id, ids, url: deps.taskUrl(id) }, { Location: `${API_PREFIX}/tasks/${id}` })
})

const taskReply = (r: { task: TaskRecord, shards?: TaskRecord[] }): Record<string, unknown> => r.shards === undefined ? { task: r.task } : { task: r.task, shards: r.shards }

route('GET', '/tasks/{id}', async ({ res, params, deps }) => {
  sendJson(res, 200, taskReply(await call(deps, { t: 'task-show', id: params.id }, 'task')))
})

route('POST', '/tasks/{id}/cancel', async ({ req, res, params, deps }) => {
  await ignoreBody(req)
  sendJson(res, 200, taskReply(await call(deps, { t: 'task-cancel', id: params.id }, 'task')))
})

route('GET', '/tasks/{id}/log', async ({ res, params, query, deps }) => {
  const stream = query.get('stream') ?? 'all'
  if (stream !== 'all' && stream !== 'stdout' && stream !== 'stderr') {
    throw new VgridError('ERR_BAD_ARGUMENT', `stream ${JSON.stringify(stream.slice(0, 64))}: expected all, stdout or stderr`)
  }
  const f = query.get('follow')
  if (f !== null && !['0', '1', 'true', 'false', ''].includes(f)) throw new VgridError('ERR_BAD_ARGUMENT', 'follow: expected 1 or 0')
  const follow = f === '1' || f === 'true' || f === ''
  const channel = openControl(deps.handle, { t: 'task-log', id: params.id, follow, stderrOnly: stream === 'stderr' })
  const wanted = (fd: 1 | 2): boolean => stream === 'all' || (stream === 'stdout' ? fd === 1 : fd === 2)
  try {
    // The first reply decides the status: an unknown task is a 404, not an empty 200.
    let reply = await withTimeout(nextReply(channel), ANSWER_TIMEOUT_MS, 'the agent did not answer the log request in time')
    if (reply === undefined) throw new VgridError('ERR_INTERNAL', 'the agent ended the log request without a reply')
    if (!follow) {
      res.writeHead(200, { ...BASE_HEADERS, 'Content-Type': 'text/plain; charset=utf-8' })
      for (; reply !== undefined && reply.t === 'log'; reply = await nextReply(channel).catch(() => undefined)) {
        if (wanted(reply.fd) && !res.write(reply.data)) await new Promise((resolve) => { res.once('drain', resolve); res.once('close', resolve) })
        if (res.destroyed) return
      }
      res.end()
      return
    }
    const sse = deps.openSse(res)
    sse.signal.addEventListener('abort', () => { channel.destroy() }, { once: true })
    const decoders = { 1: new TextDecoder(), 2: new TextDecoder() }
    try {
      for (; reply !== undefined; reply = await nextReply(channel)) {
        if (reply.t === 'log') {
          if (wanted(reply.fd)) await sse.send('log', { fd: reply.fd, text: decoders[reply.fd].decode(reply.data, { stream: true }) })
        } else if (reply.t === 'task') {
          await sse.send('end', taskSummary(reply.task))
          break
        }
      }
    } catch (err) {
      await sse.send('error', { error: err instanceof VgridError ? err.toWire() : { code: 'ERR_INTERNAL', message: String(err) } })
    }
    sse.close()
  } finally {
    channel.destroy()
  }
})

route('GET', '/events', async ({ res, deps }) => {
  streamEvents(deps.openSse(res), deps.grid, deps.tasks)
})
