/**
 * The HTTP API of a real agent through real HTTP: authentication (token, the one-time `vgrid
 * ui` link, its cookie, the Origin rule for writes), every route with its response checked
 * against the OpenAPI document, submit → wait → log, cancel, Server-Sent Events for a log and
 * for the grid, and hostile input: oversized and broken bodies, unknown routes, paths that
 * try to leave the dashboard's files, and a task name that is HTML.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fs from 'node:fs'
import https from 'node:https'
import { spawnSync } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import pty from '@lydell/node-pty'
import { startAgent, stopAll, runCli, waitFor, sharedDir, guestShare, tempDir, heldInTerminal, type AgentProc } from '../helpers/procs.js'
import { api, baseOf, compileAll, conforms, rawGet, sse, tokenOf } from '../helpers/http.js'

const XSS = '<img/src=x/onerror=alert(1)>'
const NO_DESKTOP = { DISPLAY: '', WAYLAND_DISPLAY: '' }

let a: AgentProc
let share: string
beforeAll(async () => {
  share = sharedDir()
  a = await startAgent({ args: guestShare(share) })
}, 60_000)
afterAll(async () => { await stopAll() })

function goFile (): string {
  return path.join(share, `go-${Math.random().toString(16).slice(2)}`)
}

async function submit (body: Record<string, unknown>): Promise<string> {
  const r = await api(a, 'POST', '/tasks', { body })
  conforms('post', '/tasks', r)
  expect(r.status, r.text).toBe(201)
  return r.json.id as string
}

async function ended (id: string): Promise<any> {
  return await waitFor(async () => {
    const r = await api(a, 'GET', `/tasks/${id}`)
    conforms('get', '/tasks/{id}', r)
    return ['succeeded', 'failed', 'cancelled', 'upstream-failed', 'lost'].includes(r.json.task.state) ? r.json.task : undefined
  }, `task ${id} to end`, 30_000, 100)
}

/** A login link from `vgrid ui --url`, as its owner gets it. */
async function loginLink (): Promise<string> {
  const r = await a.vgrid(['ui', '--url'], { env: NO_DESKTOP })
  expect(r.code, r.stderr).toBe(0)
  const link = r.stdout.trim()
  expect(link).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/login\?code=[A-Za-z0-9_-]+$/)
  return link
}

describe('where the agent serves', () => {
  it('shows its base URL in vgrid status, and keeps its token private', async () => {
    const r = await a.vgrid(['status', '--json'])
    expect(JSON.parse(r.stdout).status.http).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const human = await a.vgrid(['status'])
    expect(human.stdout).toContain(baseOf(a))
    expect(fs.statSync(path.join(a.home, 'http.token')).mode & 0o777).toBe(0o600)
    expect(tokenOf(a)).toMatch(/^[A-Za-z0-9_-]{40,}$/)
  })

  it('has an OpenAPI document whose every response schema compiles', async () => {
    const r = await api(a, 'GET', '/openapi.json', { auth: false })
    expect(r.status).toBe(200)
    expect(r.json.openapi).toBe('3.1.0')
    expect(compileAll()).toBeGreaterThan(10)
  })

  it('serves over TLS with --http-cert and --http-key, to a client that trusts the certificate', async () => {
    const dir = tempDir()
    const cert = path.join(dir, 'cert.pem')
    const key = path.join(dir, 'key.pem')
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
      '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' })
    expect(made.status, made.stderr).toBe(0)
    const t = await startAgent({ args: ['--http-cert', cert, '--http-key', key] })
    expect(t.http).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const get = async (url: string, o: https.RequestOptions): Promise<{ status: number, body: string }> => await new Promise((resolve, reject) => {
      https.get(url, o, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => { body += d })
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      }).on('error', reject)
    })
    const ok = await get(`${t.http!}/api/v1/peers`, { ca: fs.readFileSync(cert), headers: { Authorization: `Bearer ${tokenOf(t)}` } })
    expect(ok.status, ok.body).toBe(200)
    expect(JSON.parse(ok.body).peers.map((p: { peer: string }) => p.peer)).toContain(t.peer)
    // a client that does not trust it gets no answer; nor does one speaking plain HTTP
    await expect(get(`${t.http!}/api/v1/peers`, {})).rejects.toThrow(/self[- ]signed/i)
    const plain = await fetch(`${t.http!.replace('https:', 'http:')}/api/v1/peers`, { headers: { Authorization: `Bearer ${tokenOf(t)}` } }).then((r) => r.status, () => 'refused')
    expect(plain).not.toBe(200)
    await t.stop()
  })

  it('refuses an address other than loopback without TLS, saying what to do', async () => {
    const r = await runCli('vgrid', ['agent', '--http', '0.0.0.0:0'], { home: tempDir() })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/0\.0\.0\.0:0: an address other than loopback needs TLS/)
    expect(r.stderr).toMatch(/--http-cert FILE and --http-key FILE/)
  })

  it('refuses to start on an HTTP port asked for and taken, and goes on without HTTP when the default is taken', async () => {
    const port = Number(new URL(baseOf(a)).port)
    const taken = await runCli('vgrid', ['agent', '--listen', '/ip4/127.0.0.1/tcp/0', '--http', `127.0.0.1:${port}`], { home: tempDir() })
    expect(taken.code).toBe(255)
    expect(taken.stderr).toContain(`the HTTP address 127.0.0.1:${port} is already in use`)
    // Hold the default port (or find it held already): the agent must start all the same.
    const holder = net.createServer()
    await new Promise<void>((resolve) => { holder.once('error', () => { resolve() }); holder.listen(7322, '127.0.0.1', resolve) })
    try {
      const b = await startAgent({ defaultHttp: true })
      expect(b.http).toBeUndefined()
      await waitFor(() => /this agent serves no HTTP API or dashboard/.test(b.output()), 'the warning')
      const ui = await b.vgrid(['ui', '--url'], { env: NO_DESKTOP })
      expect(ui.code).toBe(255)
      expect(ui.stderr).toMatch(/serves no dashboard/)
      await b.stop()
    } finally {
      holder.close()
    }
  }, 60_000)
})

describe('authentication', () => {
  it('answers 401 without a token and with a wrong one', async () => {
    for (const auth of [false, 'not-the-token', `${tokenOf(a)}x`] as const) {
      const r = await api(a, 'GET', '/peers', { auth })
      expect(r.status).toBe(401)
      conforms('get', '/peers', r)
      expect(r.json.error.code).toBe('ERR_UNAUTHENTICATED')
      expect(r.headers.get('access-control-allow-origin')).toBeNull()
    }
  })

  it('logs a browser in once through a vgrid ui link, with an HttpOnly SameSite=Strict cookie', async () => {
    const link = await loginLink()
    const first = await fetch(link, { redirect: 'manual' })
    expect(first.status).toBe(303)
    expect(first.headers.get('location')).toBe('/')
    const cookie = first.headers.get('set-cookie')!
    expect(cookie).toMatch(/HttpOnly/)
    expect(cookie).toMatch(/SameSite=Strict/)
    expect(cookie).toMatch(/Path=\//)
    const session = cookie.split(';')[0]!
    // the code works once
    expect((await fetch(link, { redirect: 'manual' })).status).toBe(401)
    const peers = await api(a, 'GET', '/peers', { auth: false, headers: { cookie: session } })
    expect(peers.status).toBe(200)
    // a write with the cookie must come from the agent's own origin
    const body = { argv: ['true'], noSync: true }
    const none = await api(a, 'POST', '/tasks', { auth: false, headers: { cookie: session }, body })
    expect(none.status).toBe(403)
    conforms('post', '/tasks', none)
    const other = await api(a, 'POST', '/tasks', { auth: false, headers: { cookie: session, origin: 'http://evil.example' }, body })
    expect(other.status).toBe(403)
    expect(other.json.error.code).toBe('ERR_NOT_ALLOWED')
    const own = await api(a, 'POST', '/tasks', { auth: false, headers: { cookie: session, origin: baseOf(a) }, body })
    expect(own.status).toBe(201)
    // a forged session is nobody
    expect((await api(a, 'GET', '/peers', { auth: false, headers: { cookie: `${session}x` } })).status).toBe(401)
  })

  it('prints the link where there is no desktop', async () => {
    const r = await a.vgrid(['ui'], { env: NO_DESKTOP })
    expect(r.stdout.trim()).toMatch(/\/login\?code=/)
  })
})

describe('tasks through the API', () => {
  it('lists the members with their GPUs', async () => {
    const r = await api(a, 'GET', '/peers')
    expect(r.status).toBe(200)
    conforms('get', '/peers', r)
    const self = r.json.peers.find((p: any) => p.self === true)
    expect(self.peer).toBe(a.peer)
    expect(Array.isArray(self.resources.gpus)).toBe(true)
  })

  it('submits, waits and reads the log; a name and a log that are HTML come back as data', async () => {
    const id = await submit({ argv: ['sh', '-c', `echo out; echo '${XSS}'; echo err >&2`], name: XSS, cpus: 1, env: { A: '1' } })
    const t = await ended(id)
    expect(t.state).toBe('succeeded')
    expect(t.name).toBe(XSS)
    const one = await api(a, 'GET', `/tasks/${id}`)
    expect(one.headers.get('content-type')).toBe('application/json; charset=utf-8')
    expect(one.headers.get('x-content-type-options')).toBe('nosniff')
    expect(one.text).toContain(JSON.stringify(XSS))
    const listed = await api(a, 'GET', `/tasks?name=${encodeURIComponent(XSS)}`)
    conforms('get', '/tasks', listed)
    expect(listed.json.tasks.map((x: any) => x.id)).toEqual([id])
    const log = await api(a, 'GET', `/tasks/${id}/log`)
    conforms('get', '/tasks/{id}/log', log)
    expect(log.headers.get('content-type')).toBe('text/plain; charset=utf-8')
    expect(log.headers.get('x-content-type-options')).toBe('nosniff')
    expect(log.text.split('\n').sort()).toEqual(['', XSS, 'err', 'out'])
    expect((await api(a, 'GET', `/tasks/${id}/log?stream=stderr`)).text).toBe('err\n')
    expect((await api(a, 'GET', `/tasks/${id}/log?stream=stdout`)).text).toBe(`out\n${XSS}\n`)
    const ok = await api(a, 'GET', '/tasks?state=succeeded')
    expect(ok.json.tasks.every((x: any) => x.state === 'succeeded')).toBe(true)
    expect(ok.json.tasks.some((x: any) => x.id === id)).toBe(true)
  })

  it('runs shards and syncs a workspace of the agent\'s machine', async () => {
    const ws = tempDir('vgrid-http-ws-')
    fs.writeFileSync(path.join(ws, 'in.txt'), 'hello\n')
    const r = await api(a, 'POST', '/tasks', { body: { argv: ['sh', '-c', 'cat in.txt > "out-$VGRID_SHARD_INDEX.txt"'], shards: 2, workspace: ws } })
    expect(r.status, r.text).toBe(201)
    conforms('post', '/tasks', r)
    expect(r.json.ids).toHaveLength(2)
    expect(r.json.url).toBe(`${baseOf(a)}/#/tasks/${r.json.id as string}`)
    for (const id of r.json.ids) expect((await ended(id)).state).toBe('succeeded')
    await waitFor(() => fs.existsSync(path.join(ws, 'out-1.txt')), 'the outputs to come back')
    expect(fs.readFileSync(path.join(ws, 'out-0.txt'), 'utf8')).toBe('hello\n')
  })

  it('cancels a running task', async () => {
    const id = await submit({ argv: ['sleep', '600'] })
    await waitFor(async () => (await api(a, 'GET', `/tasks/${id}`)).json.task.state === 'running', 'the task to run', 20_000, 100)
    const r = await api(a, 'POST', `/tasks/${id}/cancel`)
    expect(r.status, r.text).toBe(200)
    conforms('post', '/tasks/{id}/cancel', r)
    expect((await ended(id)).state).toBe('cancelled')
  })

  it('follows a log as Server-Sent Events until the task ends', async () => {
    const go = goFile()
    const id = await submit({ argv: ['sh', '-c', `echo first; while [ ! -e ${go} ]; do sleep 0.05; done; echo second >&2`] })
    const s = await sse(a, `/tasks/${id}/log?follow=1`)
    expect(s.status).toBe(200)
    expect(s.contentType).toBe('text/event-stream; charset=utf-8')
    await s.next((e) => e.event === 'log' && e.data.text === 'first\n' && e.data.fd === 1, 'the first line')
    fs.writeFileSync(go, '')
    await s.next((e) => e.event === 'log' && e.data.text === 'second\n' && e.data.fd === 2, 'the second line')
    const end = await s.next((e) => e.event === 'end', 'the end')
    expect(end.data).toMatchObject({ id, state: 'succeeded', exitCode: 0 })
    await s.end()
  })

  it('streams task changes and members joining and leaving on /events, and ends the stream when the agent stops', async () => {
    const events = await sse(a, '/events')
    expect(events.status).toBe(200)
    await events.next((e) => e.event === 'hello', 'hello')
    const id = await submit({ argv: ['true'] })
    await events.next((e) => e.event === 'task' && e.data.id === id && e.data.state === 'succeeded', 'the task to succeed')
    const b = await startAgent({ join: a.token })
    await events.next((e) => e.event === 'member-joined' && e.data.peer === b.peer, 'the second member to join')
    const theirs = await sse(b, '/events')
    await theirs.next((e) => e.event === 'hello', 'hello from the second member')
    await b.stop()
    await theirs.end()
    await events.next((e) => e.event === 'member-left' && e.data.peer === b.peer, 'the second member to leave')
    events.close()
  }, 60_000)

  it('prints the dashboard URL under the id on a terminal, and only the id into a pipe', async () => {
    const piped = await runCli('vbatch', ['--no-sync', 'true'], { home: a.home })
    expect(piped.stderr).toBe('')
    expect(piped.stdout).toMatch(/^[0-9a-f]{16}\n$/)
    const term = pty.spawn(...heldInTerminal('vbatch', ['--no-sync', 'true']), { cols: 200, rows: 10, cwd: a.workspace, env: { ...process.env, VGRID_HOME: a.home } })
    let out = ''
    term.onData((d) => { out += d })
    const exited = new Promise<number>((resolve) => { term.onExit(({ exitCode }) => { resolve(exitCode) }) })
    await waitFor(() => /\/#\/tasks\/[0-9a-f]{16}\r?\n/.test(out), 'vbatch to print the link', 20_000)
    expect(await exited).toBe(0)
    const [id, link] = out.split(/\r?\n/).map((l) => l.trim())
    expect(id).toMatch(/^[0-9a-f]{16}$/)
    expect(link).toBe(`${baseOf(a)}/#/tasks/${id!}`)
  })
})

describe('hostile input', () => {
  it('refuses a body past 1 MiB with 413, and the agent serves on', async () => {
    const r = await api(a, 'POST', '/tasks', { raw: `{"argv":["${'a'.repeat(2 * 1024 * 1024)}"]}`, headers: { 'content-type': 'application/json' } })
    expect(r.status).toBe(413)
    conforms('post', '/tasks', r)
    expect(r.json.error.code).toBe('ERR_MESSAGE_TOO_LARGE')
    expect((await api(a, 'GET', '/peers')).status).toBe(200)
  })

  it.each<[string, Record<string, unknown>, number, string]>([
    ['broken JSON', { raw: '{"argv": [' }, 400, 'ERR_BAD_MESSAGE'],
    ['a body that is not an object', { body: ['true'] }, 400, 'ERR_BAD_ARGUMENT'],
    ['an unknown field', { body: { argv: ['true'], gpu: 1 } }, 400, 'ERR_BAD_ARGUMENT'],
    ['a field of the wrong type', { body: { argv: ['true'], cpus: '2' } }, 400, 'ERR_BAD_ARGUMENT'],
    ['more cores than vbatch allows', { body: { argv: ['true'], cpus: 10_000_000 } }, 400, 'ERR_BAD_ARGUMENT'],
    ['a relative workspace', { body: { argv: ['true'], workspace: 'here' } }, 400, 'ERR_BAD_ARGUMENT'],
    ['more GPUs than the grid has', { body: { argv: ['true'], gpus: 64 } }, 422, 'ERR_IMPOSSIBLE_REQUEST'],
    ['a body that is not JSON', { raw: 'argv=true', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, 'ERR_BAD_MESSAGE']
  ])('answers %s with %i', async (_what, opts, status, code) => {
    const raw = opts.raw as string | undefined
    const r = await api(a, 'POST', '/tasks', {
      ...(raw !== undefined ? { raw, headers: { 'content-type': 'application/json', ...(opts.headers as Record<string, string> | undefined) } } : { body: opts.body })
    })
    expect(r.status, r.text).toBe(status)
    conforms('post', '/tasks', r)
    expect(r.json.error.code).toBe(code)
  })

  it('answers an unknown route 404, a wrong method 405 and an unknown task 404', async () => {
    const route = await api(a, 'GET', '/nothing-here')
    expect(route.status).toBe(404)
    expect(route.json.error.code).toBe('ERR_NOT_FOUND')
    const method = await api(a, 'DELETE', '/tasks')
    expect(method.status).toBe(405)
    expect(method.headers.get('allow')).toBe('GET, POST')
    const task = await api(a, 'GET', '/tasks/0123456789abcdef')
    expect(task.status).toBe(404)
    conforms('get', '/tasks/{id}', task)
    expect(task.json.error.code).toBe('ERR_TASK_NOT_FOUND')
    expect((await api(a, 'GET', '/tasks?state=sleeping')).status).toBe(400)
  })

  it('never serves a file outside the dashboard\'s own', async () => {
    const index = await rawGet(a, '/')
    expect(index.status).toBe(200)
    expect(index.type).toBe('text/html; charset=utf-8')
    for (const p of [
      '/../package.json', '/%2e%2e/package.json', '/..%2fpackage.json', '/%2e%2e%2fpackage.json', '/ui/../package.json',
      '/index.html/../../package.json', '/..%2f..%2f..%2f..%2fetc%2fpasswd', '/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
      '/..\\..\\package.json', '/%2e%2e%5cpackage.json', '//etc/passwd', '/.%2e/.%2e/etc/passwd', '/index.html%00.json', '/src/http/server.ts'
    ]) {
      const r = await rawGet(a, p)
      expect([400, 404], p).toContain(r.status)
      expect(r.text, p).not.toMatch(/"name": "vgrid"|root:x:0|startHttpServer/)
    }
  })

  it('sends a strict Content-Security-Policy with the page, and never CORS headers', async () => {
    const r = await fetch(`${baseOf(a)}/`, { headers: { origin: 'http://evil.example' } })
    const csp = r.headers.get('content-security-policy')!
    expect(csp).toContain("default-src 'none'")
    expect(csp).toContain("script-src 'self'")
    expect(csp).toContain("frame-ancestors 'none'")
    expect(r.headers.get('access-control-allow-origin')).toBeNull()
    const pre = await fetch(`${baseOf(a)}/api/v1/tasks`, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } })
    expect(pre.headers.get('access-control-allow-origin')).toBeNull()
    expect(pre.status).toBeGreaterThanOrEqual(400)
  })

  it('answers only to its own host name on loopback (no DNS rebinding)', async () => {
    const u = new URL(baseOf(a))
    const status = await new Promise<number>((resolve, reject) => {
      const s = net.connect(Number(u.port), u.hostname, () => { s.write('GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n') })
      let text = ''
      s.on('data', (d) => { text += d.toString() })
      s.on('end', () => { resolve(Number(text.split(' ')[1])) })
      s.on('error', reject)
    })
    expect(status).toBe(421)
  })
})
