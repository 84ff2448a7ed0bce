import { describe, it, expect } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { isLoopback, parseHttpAddress } from '../../src/http/address.js'
import { listAssets } from '../../src/http/assets.js'
import { HTTP_STATUS, errorResponse } from '../../src/http/status.js'
import { membersDiff } from '../../src/http/events.js'
import { ERROR_CODES, VgridError, type ErrorCode } from '../../src/common/errors.js'
import { resolveAgentConfig } from '../../src/agent/config.js'
import { badArg } from '../helpers/bad-arg.js'
import { tempDir } from '../helpers/procs.js'

describe('--http', () => {
  it.each<[string, unknown]>([
    ['127.0.0.1:7322', { host: '127.0.0.1', port: 7322 }],
    ['localhost:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:8080', { host: '::1', port: 8080 }],
    ['0.0.0.0:8443', { host: '0.0.0.0', port: 8443 }],
    ['9000', { host: '127.0.0.1', port: 9000 }],
    ['OFF', 'off']
  ])('reads %s', (text, want) => {
    expect(parseHttpAddress(text)).toEqual(want)
  })

  it.each(['lab.example:80', '127.0.0.1', '127.0.0.1:99999', '::1:80', ':80', ''])('refuses %j', (text) => {
    expect(parseHttpAddress(text)).toHaveProperty('error')
  })

  it('knows loopback', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) expect(isLoopback(h)).toBe(true)
    for (const h of ['0.0.0.0', '192.168.1.5', '::', '10.0.0.1']) expect(isLoopback(h)).toBe(false)
  })

  it('is 127.0.0.1:7322 by default, served when free; off, or another address, when asked', () => {
    const env = { VGRID_HOME: tempDir('vgrid-http-conf-') }
    expect(resolveAgentConfig({}, env).http).toEqual({ host: '127.0.0.1', port: 7322, ifFree: true })
    expect(resolveAgentConfig({ http: 'off' }, env).http).toBeUndefined()
    expect(resolveAgentConfig({}, { ...env, VGRID_HTTP: '127.0.0.1:9' }).http).toEqual({ host: '127.0.0.1', port: 9 })
    expect(resolveAgentConfig({ http: '0.0.0.0:8443', httpCert: '/c.pem', httpKey: '/k.pem' }, env).http)
      .toEqual({ host: '0.0.0.0', port: 8443, tls: { certFile: '/c.pem', keyFile: '/k.pem' } })
  })

  it('refuses an address other than loopback without TLS, and half of TLS', () => {
    const env = { VGRID_HOME: tempDir('vgrid-http-conf-') }
    const e = badArg(() => resolveAgentConfig({ http: '192.168.1.5:7322' }, env))
    expect(e.message).toMatch(/needs TLS/)
    expect(e.hint).toMatch(/--http-cert FILE and --http-key FILE/)
    expect(badArg(() => resolveAgentConfig({ httpCert: '/c.pem' }, env)).message).toMatch(/--http-key is missing/)
    expect(badArg(() => resolveAgentConfig({ http: 'lab:80' }, env)).message).toMatch(/^--http: "lab:80" is not valid/)
  })
})

describe('error statuses', () => {
  it('has one for every code, bad input always 4xx', () => {
    expect(Object.keys(HTTP_STATUS).sort()).toEqual(Object.keys(ERROR_CODES).sort())
    for (const code of ['ERR_BAD_ARGUMENT', 'ERR_BAD_MESSAGE', 'ERR_BAD_TOKEN', 'ERR_UNSAFE_PATH', 'ERR_MESSAGE_TOO_LARGE', 'ERR_TASK_NOT_FOUND', 'ERR_IMPOSSIBLE_REQUEST'] as ErrorCode[]) {
      expect(HTTP_STATUS[code]).toBeGreaterThanOrEqual(400)
      expect(HTTP_STATUS[code]).toBeLessThan(500)
    }
  })

  it('carries the code, message and hint as the CLI has them', () => {
    expect(errorResponse(new VgridError('ERR_TASK_NOT_FOUND', 'no task x', 'see the list'))).toEqual({ status: 404, body: { error: { code: 'ERR_TASK_NOT_FOUND', message: 'no task x', hint: 'see the list' } } })
    expect(errorResponse(new Error('boom')).status).toBe(500)
  })
})

describe('the dashboard\'s files', () => {
  it('lists regular files only: no symlink (in or out), no dot-file, no unknown type', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-ui-'))
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-secret-'))
    try {
      fs.writeFileSync(path.join(outside, 'secret.js'), 'secret')
      fs.writeFileSync(path.join(root, 'index.html'), '<p>')
      fs.mkdirSync(path.join(root, 'js'))
      fs.writeFileSync(path.join(root, 'js', 'app.js'), '')
      fs.writeFileSync(path.join(root, '.env'), 'x')
      fs.writeFileSync(path.join(root, 'notes.md'), 'x')
      fs.symlinkSync(path.join(outside, 'secret.js'), path.join(root, 'js', 'link.js'))
      fs.symlinkSync(outside, path.join(root, 'out'))
      const assets = listAssets(root)
      expect([...assets.keys()].sort()).toEqual(['/', '/index.html', '/js/app.js'])
      expect(assets.get('/')!.type).toBe('text/html; charset=utf-8')
    } finally {
      fs.rmSync(root, { recursive: true })
      fs.rmSync(outside, { recursive: true })
    }
  })
})

describe('/events members', () => {
  it('tells who joined and who left between two views', () => {
    const before = new Map([['a', 'ha'], ['b', 'hb']])
    const after = new Map([['b', 'hb'], ['c', 'hc']])
    expect(membersDiff(before, after)).toEqual({ joined: [{ peer: 'c', host: 'hc' }], left: [{ peer: 'a', host: 'ha' }] })
  })
})
