/**
 * Who may use the API: whoever holds the bearer token of `$VGRID_HOME/http.token` (the owner:
 * the file is theirs, 0600), or a browser session opened with a one-time login code that only
 * the control socket's owner can get (`vgrid ui`). Secrets are compared in constant time;
 * sessions and codes live in memory only, so a restart of the agent logs every browser out.
 */
import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { VgridError } from '../common/errors.js'
import { LOGIN_CODE_TTL_MS, MAX_LOGIN_CODES, MAX_SESSIONS, SECRET_BYTES, SESSION_TTL_MS, TOKEN_FILE } from './constants.js'

export function newSecret (): string {
  return crypto.randomBytes(SECRET_BYTES).toString('base64url')
}

/** `a === b` without telling, by its time, how much of a guess was right. */
export function sameSecret (a: string, b: string): boolean {
  const x = crypto.createHash('sha256').update(a).digest()
  const y = crypto.createHash('sha256').update(b).digest()
  return crypto.timingSafeEqual(x, y)
}

const TOKEN_RE = /^[A-Za-z0-9_-]{20,256}$/

/**
 * The API token: read from `$home/http.token`, or made once (0600, written whole and renamed,
 * so two starts never see half a token). A file that holds no token is replaced.
 */
export async function loadOrCreateToken (home: string): Promise<string> {
  const file = path.join(home, TOKEN_FILE)
  const text = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw new VgridError('ERR_BAD_ARGUMENT', `cannot read ${file}: ${err.message}`, `remove ${file}: the agent makes a new token`)
  })
  const existing = text?.trim()
  if (existing !== undefined && TOKEN_RE.test(existing)) {
    await fs.chmod(file, 0o600).catch(() => {})
    return existing
  }
  const token = newSecret()
  const tmp = `${file}.${process.pid}.tmp`
  await fs.writeFile(tmp, `${token}\n`, { mode: 0o600 })
  await fs.rename(tmp, file)
  return token
}

/** `Authorization: Bearer TOKEN` → TOKEN; undefined when absent or of another scheme. */
export function bearerOf (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header)
  return m?.[1]
}

/** The value of cookie `name` in a `Cookie` header. */
export function cookieOf (header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq === -1) continue
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

interface Expiring { expires: number }

/** Secrets that expire, at most `max` of them (the oldest goes first). */
class SecretSet<T extends Expiring> {
  private readonly items = new Map<string, T>()
  constructor (private readonly max: number, private readonly now: () => number) {}

  add (secret: string, item: T): void {
    this.prune()
    while (this.items.size >= this.max) this.items.delete(this.items.keys().next().value!)
    this.items.set(secret, item)
  }

  /**
   * The item whose secret equals `given`, still valid. Every stored secret is compared (in
   * constant time each), so the lookup does not reveal which prefix matched.
   */
  find (given: string): [string, T] | undefined {
    this.prune()
    let found: [string, T] | undefined
    for (const [secret, item] of this.items) if (sameSecret(secret, given)) found = [secret, item]
    return found
  }

  delete (secret: string): void { this.items.delete(secret) }

  get size (): number { return this.items.size }

  private prune (): void {
    const t = this.now()
    for (const [k, v] of this.items) if (v.expires <= t) this.items.delete(k)
  }
}

export interface AuthInit {
  token: string
  /** Injected for tests; Date.now by default. */
  now?: () => number
}

export type Who = { via: 'token' } | { via: 'session' }

/**
 * The token, the login codes handed out through the control socket, and the sessions they
 * opened. Pure: the HTTP server asks it, with what the request carried.
 */
export class Auth {
  private readonly token: string
  private readonly now: () => number
  private readonly codes: SecretSet<Expiring>
  private readonly sessions: SecretSet<Expiring>

  constructor (init: AuthInit) {
    this.token = init.token
    this.now = init.now ?? Date.now
    this.codes = new SecretSet(MAX_LOGIN_CODES, this.now)
    this.sessions = new SecretSet(MAX_SESSIONS, this.now)
  }

  /** A new one-time login code, valid LOGIN_CODE_TTL_MS. */
  loginCode (): string {
    const code = newSecret()
    this.codes.add(code, { expires: this.now() + LOGIN_CODE_TTL_MS })
    return code
  }

  /** Spends a login code: a new session id, or undefined for a code unknown, used or expired. */
  login (code: string): string | undefined {
    const hit = this.codes.find(code)
    if (hit === undefined) return undefined
    this.codes.delete(hit[0])
    const session = newSecret()
    this.sessions.add(session, { expires: this.now() + SESSION_TTL_MS })
    return session
  }

  /** Who a request is: the bearer token wins over a cookie. */
  check (bearer: string | undefined, session: string | undefined): Who | undefined {
    if (bearer !== undefined) return sameSecret(this.token, bearer) ? { via: 'token' } : undefined
    if (session !== undefined && this.sessions.find(session) !== undefined) return { via: 'session' }
    return undefined
  }

  logout (session: string): void {
    const hit = this.sessions.find(session)
    if (hit !== undefined) this.sessions.delete(hit[0])
  }
}
