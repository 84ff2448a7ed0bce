import { describe, it, expect } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Auth, bearerOf, cookieOf, loadOrCreateToken, sameSecret } from '../../src/http/auth.js'
import { LOGIN_CODE_TTL_MS, MAX_LOGIN_CODES, SESSION_TTL_MS } from '../../src/http/constants.js'

describe('the API token', () => {
  it('is made once, 0600, and read back at the next start', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-http-home-'))
    try {
      const t = await loadOrCreateToken(home)
      expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(fs.statSync(path.join(home, 'http.token')).mode & 0o777).toBe(0o600)
      expect(await loadOrCreateToken(home)).toBe(t)
      fs.writeFileSync(path.join(home, 'http.token'), 'short\n')
      expect(await loadOrCreateToken(home)).not.toBe('short')
    } finally {
      fs.rmSync(home, { recursive: true })
    }
  })

  it('is read from Authorization: Bearer only', () => {
    expect(bearerOf('Bearer abc')).toBe('abc')
    expect(bearerOf('bearer  abc ')).toBe('abc')
    expect(bearerOf('Basic abc')).toBeUndefined()
    expect(bearerOf('Bearer a b')).toBeUndefined()
    expect(bearerOf(undefined)).toBeUndefined()
  })

  it('is compared whole', () => {
    expect(sameSecret('abc', 'abc')).toBe(true)
    expect(sameSecret('abc', 'abd')).toBe(false)
    expect(sameSecret('abc', 'abcd')).toBe(false)
    expect(sameSecret('', 'a')).toBe(false)
  })
})

describe('login codes and sessions', () => {
  const clock = (): { now: () => number, pass: (ms: number) => void } => {
    let t = 1_000_000
    return { now: () => t, pass: (ms) => { t += ms } }
  }

  it('opens a session once per code', () => {
    const auth = new Auth({ token: 'tok-'.repeat(8) })
    const code = auth.loginCode()
    const session = auth.login(code)!
    expect(session).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(auth.login(code)).toBeUndefined()
    expect(auth.check(undefined, session)).toEqual({ via: 'session' })
    expect(auth.check(undefined, `${session}x`)).toBeUndefined()
    auth.logout(session)
    expect(auth.check(undefined, session)).toBeUndefined()
  })

  it('lets a code expire after LOGIN_CODE_TTL_MS, and a session after SESSION_TTL_MS', () => {
    const c = clock()
    const auth = new Auth({ token: 'tok-'.repeat(8), now: c.now })
    const late = auth.loginCode()
    c.pass(LOGIN_CODE_TTL_MS)
    expect(auth.login(late)).toBeUndefined()
    const session = auth.login(auth.loginCode())!
    c.pass(SESSION_TTL_MS - 1)
    expect(auth.check(undefined, session)).toBeDefined()
    c.pass(1)
    expect(auth.check(undefined, session)).toBeUndefined()
  })

  it('keeps at most MAX_LOGIN_CODES codes, dropping the oldest', () => {
    const auth = new Auth({ token: 'tok-'.repeat(8) })
    const first = auth.loginCode()
    for (let i = 0; i < MAX_LOGIN_CODES; i++) auth.loginCode()
    expect(auth.login(first)).toBeUndefined()
  })

  it('lets the bearer token win over a cookie, and a wrong token fail even with a good cookie', () => {
    const auth = new Auth({ token: 'tok-'.repeat(8) })
    const session = auth.login(auth.loginCode())!
    expect(auth.check('tok-'.repeat(8), undefined)).toEqual({ via: 'token' })
    expect(auth.check('wrong', session)).toBeUndefined()
    expect(auth.check(undefined, undefined)).toBeUndefined()
  })

  it('finds its cookie among others', () => {
    expect(cookieOf('a=1; vgrid_session_7322=xyz; b=2', 'vgrid_session_7322')).toBe('xyz')
    expect(cookieOf('vgrid_session_7323=xyz', 'vgrid_session_7322')).toBeUndefined()
    expect(cookieOf(undefined, 'x')).toBeUndefined()
  })
})
