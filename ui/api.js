/**
 * The agent's API as the page uses it: same-origin requests carrying the session cookie
 * (HttpOnly: the page never sees it), and one shared `/events` stream that the views subscribe
 * to. A 401 means no session: the page says how to get one.
 */

export const API = '/api/v1'

export class ApiError extends Error {
  constructor (status, body) {
    const e = body?.error ?? {}
    super(e.message ?? `HTTP ${status}`)
    this.status = status
    this.code = e.code ?? 'ERR_HTTP'
    this.hint = e.hint
  }
}

const authListeners = new Set()
/** Called with no argument when a request answered 401. */
export function onUnauthenticated (fn) { authListeners.add(fn) }

export async function get (path) {
  return await request('GET', path)
}

/** A write: the browser sends our Origin with it, which the server requires of a cookie session. */
export async function post (path, body) {
  return await request('POST', path, body)
}

async function request (method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} }
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  return await reply(await fetch(`${API}${path}`, init))
}

/**
 * A GET that boot.js may have sent already, as the page opened: its answer is taken once,
 * later calls ask again.
 */
export async function getEarly (path) {
  const early = window.vgridEarly
  if (early !== undefined && early.path === path) {
    window.vgridEarly = undefined
    return await reply(await early.response)
  }
  return await get(path)
}

async function reply (res) {
  const type = res.headers.get('content-type') ?? ''
  const data = type.startsWith('application/json') ? await res.json() : await res.text()
  if (res.status === 401) for (const fn of authListeners) fn()
  if (!res.ok) throw new ApiError(res.status, typeof data === 'object' ? data : undefined)
  return data
}

/**
 * `GET /events`, opened once and shared: `subscribe(type, fn)` returns an unsubscribe. The
 * browser reconnects by itself after a drop; `status` listeners hear 'open' and 'down'.
 */
class Events {
  constructor () {
    this.listeners = new Map()
    this.source = undefined
  }

  start () {
    if (this.source !== undefined) return
    const es = new EventSource(`${API}/events`)
    this.source = es
    for (const type of ['hello', 'member-joined', 'member-left', 'task']) {
      es.addEventListener(type, (e) => {
        let data
        try { data = JSON.parse(e.data) } catch { return }
        this.emit(type, data)
      })
    }
    es.addEventListener('open', () => { this.emit('status', 'open') })
    es.addEventListener('error', () => { this.emit('status', es.readyState === EventSource.CLOSED ? 'closed' : 'down') })
  }

  emit (type, data) {
    for (const fn of this.listeners.get(type) ?? []) {
      try { fn(data) } catch (err) { console.error(err) }
    }
  }

  subscribe (type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set())
    this.listeners.get(type).add(fn)
    return () => { this.listeners.get(type)?.delete(fn) }
  }
}

export const events = new Events()
