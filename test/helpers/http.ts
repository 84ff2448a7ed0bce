/**
 * The HTTP API of a test agent: requests with its token, Server-Sent Event streams read as
 * typed events, raw requests for paths that fetch() would tidy up, and a check of every
 * response against the OpenAPI document the agent serves.
 */
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import { OPENAPI } from '../../src/http/openapi.js'
import { API_PREFIX, TOKEN_FILE } from '../../src/http/constants.js'
import type { AgentProc } from './procs.js'

export function tokenOf (agent: AgentProc): string {
  return fs.readFileSync(path.join(agent.home, TOKEN_FILE), 'utf8').trim()
}

export function baseOf (agent: AgentProc): string {
  if (agent.http === undefined) throw new Error('the agent serves no HTTP')
  return agent.http
}

export interface Reply { status: number, headers: Headers, text: string, json: any }

/** A request to the agent's API (`path` under /api/v1), with its token unless `auth` says otherwise. */
export async function api (agent: AgentProc, method: string, p: string, opts: { body?: unknown, raw?: string, headers?: Record<string, string>, auth?: string | false } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.auth !== false) headers.authorization = `Bearer ${opts.auth ?? tokenOf(agent)}`
  let body: string | undefined = opts.raw
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body)
    headers['content-type'] ??= 'application/json'
  }
  const res = await fetch(`${baseOf(agent)}${API_PREFIX}${p}`, { method, headers, ...(body !== undefined ? { body } : {}), redirect: 'manual' })
  const text = await res.text()
  let json: unknown
  if ((res.headers.get('content-type') ?? '').startsWith('application/json')) json = JSON.parse(text)
  return { status: res.status, headers: res.headers, text, json }
}

/** A GET with a path exactly as written (fetch would resolve `..` and `%2e%2e` first). */
export async function rawGet (agent: AgentProc, rawPath: string): Promise<{ status: number, type: string, text: string }> {
  const u = new URL(baseOf(agent))
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: rawPath, method: 'GET' }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), text }) })
    })
    req.on('error', reject)
    req.end()
  })
}

export interface SseEvent { event: string, data: any }

/** An SSE stream: events as they come; `next(pred)` waits for the first that matches. */
export class SseReader {
  readonly events: SseEvent[] = []
  ended = false
  private buf = ''
  private readonly waiters = new Set<() => void>()
  private readonly abort = new AbortController()
  status = 0
  contentType = ''

  static async open (url: string, headers: Record<string, string>): Promise<SseReader> {
    const r = new SseReader()
    const res = await fetch(url, { headers, signal: r.abort.signal })
    r.status = res.status
    r.contentType = res.headers.get('content-type') ?? ''
    if (res.body === null) throw new Error('no body')
    void r.pump(res.body)
    return r
  }

  private async pump (body: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder()
    try {
      const reader = body.getReader()
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        this.buf += dec.decode(value, { stream: true })
        let i
        while ((i = this.buf.indexOf('\n\n')) !== -1) {
          const block = this.buf.slice(0, i)
          this.buf = this.buf.slice(i + 2)
          let event = 'message'
          const data: string[] = []
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7)
            else if (line.startsWith('data: ')) data.push(line.slice(6))
          }
          if (data.length > 0) this.events.push({ event, data: JSON.parse(data.join('\n')) })
          this.wake()
        }
      }
    } catch {}
    this.ended = true
    this.wake()
  }

  private wake (): void { for (const w of [...this.waiters]) w() }

  /** The first event (from the start) that matches; rejects if the stream ends without one. */
  async next (pred: (e: SseEvent) => boolean, what: string, timeoutMs = 20_000): Promise<SseEvent> {
    return await new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.events.find(pred)
        if (hit !== undefined) { done(); resolve(hit) } else if (this.ended) { done(); reject(new Error(`the stream ended before ${what}; events: ${JSON.stringify(this.events).slice(0, 2000)}`)) }
      }
      const timer = setTimeout(() => { done(); reject(new Error(`no ${what} within ${timeoutMs} ms; events: ${JSON.stringify(this.events).slice(0, 2000)}`)) }, timeoutMs)
      const done = (): void => { clearTimeout(timer); this.waiters.delete(check) }
      this.waiters.add(check)
      check()
    })
  }

  /** Resolves once the server ended the stream. */
  async end (timeoutMs = 20_000): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('the stream did not end')) }, timeoutMs)
      const check = (): void => { if (this.ended) { clearTimeout(timer); this.waiters.delete(check); resolve() } }
      this.waiters.add(check)
      check()
    })
  }

  close (): void { this.abort.abort() }
}

export async function sse (agent: AgentProc, p: string): Promise<SseReader> {
  return await SseReader.open(`${baseOf(agent)}${API_PREFIX}${p}`, { authorization: `Bearer ${tokenOf(agent)}` })
}

// ── the OpenAPI document as a validator ──

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>, components: { schemas: Record<string, unknown> } }
const doc = OPENAPI as unknown as Doc
const ajv = new Ajv2020({ strict: true, allErrors: true })
// the document's refs (#/components/schemas/X) as refs into one schema's $defs
const rewrite = (s: unknown): any => JSON.parse(JSON.stringify(s).replaceAll('"#/components/schemas/', '"vgrid-api#/$defs/'))
ajv.addSchema({ $id: 'vgrid-api', $defs: rewrite(doc.components.schemas) })
const compiled = new Map<string, ValidateFunction>()

/** Every schema of every response compiles: a bad $ref or keyword fails here. */
export function compileAll (): number {
  let n = 0
  for (const [p, ops] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(ops)) {
      for (const [status, r] of Object.entries(op.responses)) {
        for (const type of Object.keys(r.content ?? {})) { validator(m, p, status, type); n++ }
      }
    }
  }
  return n
}

function validator (method: string, template: string, status: string, type: string): ValidateFunction {
  const key = `${method} ${template} ${status} ${type}`
  let v = compiled.get(key)
  if (v === undefined) {
    const schema = doc.paths[template]?.[method]?.responses[status]?.content?.[type]?.schema
    if (schema === undefined) throw new Error(`the OpenAPI document has no ${type} response ${status} for ${method.toUpperCase()} ${template}`)
    v = ajv.compile(rewrite(schema))
    compiled.set(key, v)
  }
  return v
}

/**
 * Checks a reply against the document: its status is documented for the operation, its
 * content type is one the document lists, and a JSON body matches the schema.
 */
export function conforms (method: string, template: string, r: { status: number, headers: Headers, json?: unknown }): void {
  const type = (r.headers.get('content-type') ?? '').split(';')[0]!.trim()
  const v = validator(method.toLowerCase(), template, String(r.status), type)
  if (type === 'application/json' && !v(r.json)) {
    throw new Error(`${method} ${template} ${r.status} does not match the OpenAPI document: ${ajv.errorsText(v.errors)}\n${JSON.stringify(r.json).slice(0, 2000)}`)
  }
}
