/**
 * One HTTP exchange as the routes see it: the checked parts of the request, and replies that
 * always carry a Content-Type, `nosniff` and no-store. Bodies are read with a size cap.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { VgridError } from '../common/errors.js'
import { MAX_BODY_BYTES } from './constants.js'
import { errorResponse } from './status.js'

/** An error with a status of its own (415, 421, 503…), where the code's would not say it. */
export class HttpError extends VgridError {
  constructor (readonly status: number, code: ConstructorParameters<typeof VgridError>[0], message: string, hint?: string) {
    super(code, message, hint)
  }
}

/** Headers every response carries. Never any Access-Control-*: the API is not for other origins. */
export const BASE_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Resource-Policy': 'same-origin'
}

/** What an HTML page may do: only load what this origin serves, and never be framed. */
export const HTML_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

export function sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { ...BASE_HEADERS, ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(Buffer.byteLength(text)) })
  res.end(text)
}

export function sendError (res: ServerResponse, err: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) { res.destroy(); return }
  const { status, body } = errorResponse(err)
  sendJson(res, err instanceof HttpError ? err.status : status, body, headers)
}

export function sendText (res: ServerResponse, status: number, text: string, type = 'text/plain; charset=utf-8', headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...BASE_HEADERS, ...headers, 'Content-Type': type, 'Content-Length': String(Buffer.byteLength(text)) })
  res.end(text)
}

/**
 * The body, at most MAX_BODY_BYTES: a Content-Length past it is refused before a byte is
 * read; a body that grows past it while it arrives, as soon as it does.
 */
export async function readBody (req: IncomingMessage, max = MAX_BODY_BYTES): Promise<Buffer> {
  const tooLarge = (): HttpError => new HttpError(413, 'ERR_MESSAGE_TOO_LARGE', `the body is larger than ${max} bytes`, 'send less: a workspace is named by its directory, never sent')
  const declared = req.headers['content-length']
  if (declared !== undefined && Number(declared) > max) throw tooLarge()
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength
    if (size > max) throw tooLarge()
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, size)
}

/** A JSON body: Content-Type application/json, parsed; 415 or 400 otherwise. */
export async function readJson (req: IncomingMessage): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (type !== 'application/json') {
    // read nothing more: the connection closes after the reply
    throw new HttpError(415, 'ERR_BAD_MESSAGE', `the body must be application/json, not ${type === '' ? 'untyped' : JSON.stringify(type.slice(0, 64))}`,
      'send it with Content-Type: application/json')
  }
  const body = await readBody(req)
  try {
    return JSON.parse(body.toString('utf8'))
  } catch (err) {
    throw new VgridError('ERR_BAD_MESSAGE', `the body is not JSON: ${(err as Error).message.slice(0, 200)}`)
  }
}
