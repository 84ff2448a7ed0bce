/**
 * The agent's HTTP server: `/api/v1` (api.ts), `/login` (a `vgrid ui` link), and the
 * dashboard's files (assets.ts). Every request is time-boxed (headers, then the whole request);
 * Server-Sent Event streams outlive that but end when the agent stops. Whatever a request
 * holds, the answer is a status and a JSON error at worst: the agent never falls over.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import fs from 'node:fs'
import os from 'node:os'
import type { Socket } from 'node:net'
import { VgridError } from '../common/errors.js'
import { createLogger } from '../common/log.js'
import type { HttpConfig } from '../agent/config.js'
import { authority, dashboardTaskUrl, isLoopback } from './address.js'
import { Auth, bearerOf, cookieOf, loadOrCreateToken } from './auth.js'
import { listAssets, defaultAssetDir, type Asset } from './assets.js'
import { serveApi, type ApiDeps } from './api.js'
import {
  API_PREFIX, CLOSE_GRACE_MS, HEADERS_TIMEOUT_MS, KEEP_ALIVE_TIMEOUT_MS, MAX_BODY_BYTES, MAX_DRAIN_BYTES, MAX_SSE_STREAMS, REQUEST_TIMEOUT_MS, SESSION_COOKIE, SESSION_TTL_MS
} from './constants.js'
import type { ControlHandler } from './control-call.js'
import type { MembersSource, TaskChanges } from './events.js'
import { BASE_HEADERS, HTML_CSP, HttpError, sendError, sendText } from './request.js'
import { SseStream } from './sse.js'

const log = createLogger('http')

export interface HttpServerInit {
  config: HttpConfig
  home: string
  handle: ControlHandler
  grid: MembersSource
  tasks: TaskChanges
  /** The dashboard's files; default: the package's `ui/`. */
  assetDir?: string
}

export interface HttpServer {
  /** `http://127.0.0.1:7322`: where the API and the dashboard are. */
  readonly url: string
  /** A one-time login link for a browser (`vgrid ui`). */
  loginUrl (): string
  /** The dashboard's page of a task. */
  taskUrl (id: string): string
  close (): Promise<void>
}

export async function startHttpServer (init: HttpServerInit): Promise<HttpServer> {
  const { config } = init
  const tls = config.tls !== undefined ? readTls(config.tls) : undefined
  const auth = new Auth({ token: await loadOrCreateToken(init.home) })
  const assetDir = init.assetDir ?? defaultAssetDir()
  const assets = assetDir !== undefined ? listAssets(assetDir) : new Map<string, Asset>()
  if (assetDir === undefined) log.warn('the dashboard\'s files (ui/) are not where the package keeps them: only the API is served')
  const scheme = tls !== undefined ? 'https' : 'http'
  const sse = new Set<SseStream>()
  const sockets = new Set<Socket>()

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    serve(req, res).catch((err) => {
      if (!(err instanceof VgridError)) log.error(`${req.method ?? '?'} ${(req.url ?? '').slice(0, 200)} failed`, err)
      if (req.complete) { sendError(res, err); return }
      // Answered before the body was read (413, 401…): the rest is read and dropped, so a
      // client still sending sees the answer rather than a reset; past a bound it is cut off.
      let dropped = 0
      req.on('data', (chunk: Buffer) => { dropped += chunk.byteLength; if (dropped > MAX_DRAIN_BYTES) req.socket.destroy() })
      sendError(res, err)
      req.resume()
    })
  }
  const server = tls !== undefined ? https.createServer({ ...tls }, onRequest) : http.createServer(onRequest)
  server.headersTimeout = HEADERS_TIMEOUT_MS
  server.requestTimeout = REQUEST_TIMEOUT_MS
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
  // `Expect: 100-continue` with a body too large: refused before the client sends it
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) {
      sendError(res, new HttpError(413, 'ERR_MESSAGE_TOO_LARGE', `the body is larger than ${MAX_BODY_BYTES} bytes`), { Connection: 'close' })
      return
    }
    res.writeContinue()
    onRequest(req, res)
  })
  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  // a malformed request line or header: answered by Node with 400 and closed, never thrown
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (socket.writable && err.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
    else socket.destroy()
  })

  const port = await listen(server, config)
  const loopback = isLoopback(config.host)
  // On loopback the Host header must name us: a page of another name that resolves here
  // (DNS rebinding) gets nothing, not even the dashboard.
  const hosts = new Set([authority(config.host, port), `127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`])
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? os.hostname() : config.host
  const url = `${scheme}://${authority(shownHost, port)}`
  const cookieName = `${SESSION_COOKIE}_${port}`

  const deps: ApiDeps = {
    handle: init.handle,
    grid: init.grid,
    tasks: init.tasks,
    taskUrl: (id) => dashboardTaskUrl(url, id),
    openSse: (res) => {
      if (sse.size >= MAX_SSE_STREAMS) throw new HttpError(503, 'ERR_NO_CAPACITY', `${MAX_SSE_STREAMS} event streams are open already`, 'close one (another dashboard tab) and try again')
      const s = new SseStream(res, { ...BASE_HEADERS })
      sse.add(s)
      s.signal.addEventListener('abort', () => { sse.delete(s) }, { once: true })
      return s
    }
  }

  async function serve (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const host = req.headers.host ?? ''
    if (loopback && !hosts.has(host.toLowerCase())) {
      throw new HttpError(421, 'ERR_NOT_ALLOWED', `this agent answers only to ${[...hosts].join(', ')}, not ${JSON.stringify(host.slice(0, 100))}`)
    }
    const raw = req.url ?? ''
    if (!raw.startsWith('/')) throw new VgridError('ERR_BAD_ARGUMENT', 'the request target must be a path')
    let target: URL
    try {
      target = new URL(raw, `${scheme}://${host}`)
    } catch {
      throw new VgridError('ERR_BAD_ARGUMENT', 'the request target is not a valid path')
    }
    const path = target.pathname
    if (path === API_PREFIX || path.startsWith(`${API_PREFIX}/`)) {
      // the document that describes the API is public; the API is not
      if (path !== `${API_PREFIX}/openapi.json`) authenticate(req, `${scheme}://${host}`)
      await serveApi(req, res, target, deps)
      return
    }
    if (path === '/login') { login(req, res, target); return }
    serveAsset(req, res, path)
  }

  function authenticate (req: IncomingMessage, origin: string): void {
    const bearer = bearerOf(req.headers.authorization)
    const session = cookieOf(req.headers.cookie, cookieName)
    const who = auth.check(bearer, session)
    if (who === undefined) {
      throw new HttpError(401, 'ERR_UNAUTHENTICATED', bearer !== undefined ? 'the bearer token is not this agent\'s' : 'this API needs a token or a session',
        'send Authorization: Bearer TOKEN with the token of $VGRID_HOME/http.token, or log in with `vgrid ui`')
    }
    // A browser sends the cookie with any request to this host: a write must come from our own pages.
    if (who.via === 'session' && req.method !== 'GET' && req.method !== 'HEAD' && req.headers.origin !== origin) {
      throw new HttpError(403, 'ERR_NOT_ALLOWED', `a write with the session cookie must come from ${origin}, not ${JSON.stringify((req.headers.origin ?? 'no origin').slice(0, 100))}`)
    }
  }

  function login (req: IncomingMessage, res: ServerResponse, target: URL): void {
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET')
      throw new HttpError(405, 'ERR_METHOD_NOT_ALLOWED', '/login takes GET')
    }
    const session = auth.login(target.searchParams.get('code') ?? '')
    const html = { 'Content-Security-Policy': HTML_CSP }
    if (session === undefined) {
      sendText(res, 401, page('This login link has expired or was used already. Run <code>vgrid ui</code> again for a new one.'), 'text/html; charset=utf-8', html)
      return
    }
    const cookie = `${cookieName}=${session}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${Math.floor(SESSION_TTL_MS / 1000)}${tls !== undefined ? '; Secure' : ''}`
    // 303: the browser goes on with GET /, and the code leaves the address bar
    res.writeHead(303, { ...BASE_HEADERS, ...html, 'Set-Cookie': cookie, Location: '/', 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': '0' })
    res.end()
  }

  function serveAsset (req: IncomingMessage, res: ServerResponse, path: string): void {
    const asset = assets.get(path)
    if (asset === undefined) throw new VgridError('ERR_NOT_FOUND', 'not found')
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD')
      throw new HttpError(405, 'ERR_METHOD_NOT_ALLOWED', `${req.method ?? '?'} is not allowed here`)
    }
    const body = fs.readFileSync(asset.file)
    res.writeHead(200, {
      ...BASE_HEADERS,
      'Content-Type': asset.type,
      'Content-Length': String(body.byteLength),
      ...(asset.type.startsWith('text/html') ? { 'Content-Security-Policy': HTML_CSP } : {})
    })
    res.end(req.method === 'HEAD' ? undefined : body)
  }

  log.debug(`serving ${url}`)
  return {
    url,
    loginUrl: () => `${url}/login?code=${auth.loginCode()}`,
    taskUrl: (id) => dashboardTaskUrl(url, id),
    async close () {
      for (const s of sse) s.close()
      const closed = new Promise<void>((resolve) => { server.close(() => { resolve() }) })
      server.closeIdleConnections()
      const grace = setTimeout(() => { for (const s of sockets) s.destroy() }, CLOSE_GRACE_MS)
      await closed
      clearTimeout(grace)
    }
  }
}

function page (message: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>vgrid</title></head><body><p>${message}</p></body></html>\n`
}

function readTls (files: { certFile: string, keyFile: string }): { cert: Buffer, key: Buffer } {
  const read = (file: string, flag: string): Buffer => {
    try {
      return fs.readFileSync(file)
    } catch (err) {
      throw new VgridError('ERR_BAD_ARGUMENT', `cannot read ${flag} ${file}: ${(err as Error).message}`, `give ${flag} a PEM file this user can read`)
    }
  }
  return { cert: read(files.certFile, '--http-cert'), key: read(files.keyFile, '--http-key') }
}

/** Listens; the port in use, or an address not of this machine, is a VgridError that says so. */
async function listen (server: http.Server, config: HttpConfig): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const where = authority(config.host, config.port)
      if (err.code === 'EADDRINUSE') {
        reject(new VgridError('ERR_PORT_IN_USE', `the HTTP address ${where} is already in use`,
          'another agent (or program) serves there: give this one --http 127.0.0.1:PORT with another port, or --http off'))
      } else if (err.code === 'EADDRNOTAVAIL' || err.code === 'EACCES') {
        reject(new VgridError('ERR_BAD_ARGUMENT', `cannot serve HTTP on ${where}: ${err.code === 'EACCES' ? 'permission denied' : 'no interface of this machine has that address'}`,
          'give --http an address of this machine and a port above 1023, such as 127.0.0.1:7322'))
      } else {
        reject(err)
      }
    }
    server.once('error', onError)
    server.listen(config.port, config.host, () => { server.off('error', onError); resolve() })
  })
  server.on('error', (err) => { log.warn('the HTTP server failed', err) })
  const addr = server.address()
  return typeof addr === 'object' && addr !== null ? addr.port : config.port
}
