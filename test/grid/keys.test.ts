/**
 * What an agent keeps in $VGRID_HOME to stay the same member of the same grid: its identity
 * key and the swarm key.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createSwarmKey, loadOrCreateIdentity, loadSwarmKey, writeSwarmKey } from '../../src/grid/index.js'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'vgrid-keys-test-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('identity', () => {
  it('is created once, owner-only, and keeps the peer id across loads', async () => {
    const home = join(dir, 'home')
    const first = await loadOrCreateIdentity(home)
    expect(first.type).toBe('Ed25519')
    expect((await stat(join(home, 'identity.key'))).mode & 0o777).toBe(0o600)
    expect((await stat(home)).mode & 0o777).toBe(0o700)
    const again = await loadOrCreateIdentity(home)
    expect(peerIdFromPrivateKey(again).toString()).toBe(peerIdFromPrivateKey(first).toString())
  })

  it('refuses a corrupt identity file instead of silently replacing it', async () => {
    await writeFile(join(dir, 'identity.key'), 'not a key')
    await expect(loadOrCreateIdentity(dir)).rejects.toMatchObject({ code: 'ERR_BAD_ARGUMENT' })
  })
})

describe('swarm key', () => {
  it('round-trips through its file, owner-only', async () => {
    const key = createSwarmKey()
    expect(key.byteLength).toBe(95)
    expect(new TextDecoder().decode(key)).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
    expect(await loadSwarmKey(dir)).toBeUndefined()
    await writeSwarmKey(dir, key)
    expect((await stat(join(dir, 'swarm.key'))).mode & 0o777).toBe(0o600)
    expect(await loadSwarmKey(dir)).toEqual(key)
    expect(createSwarmKey()).not.toEqual(key)
  })

  it('accepts a key file with a trailing newline or CRLF line ends', async () => {
    const key = createSwarmKey()
    const text = new TextDecoder().decode(key)
    await writeFile(join(dir, 'swarm.key'), text.replaceAll('\n', '\r\n') + '\r\n')
    expect(await loadSwarmKey(dir)).toEqual(key)
  })

  it.each([
    ['empty', ''],
    ['wrong tag', '/key/swarm/psk/2.0.0/\n/base16/\n' + 'ab'.repeat(32)],
    ['wrong codec', '/key/swarm/psk/1.0.0/\n/base64/\n' + 'ab'.repeat(32)],
    ['short key', '/key/swarm/psk/1.0.0/\n/base16/\n' + 'ab'.repeat(31)],
    ['not hex', '/key/swarm/psk/1.0.0/\n/base16/\n' + 'zz'.repeat(32)],
    ['extra line', '/key/swarm/psk/1.0.0/\n/base16/\n' + 'ab'.repeat(32) + '\nmore']
  ])('refuses a corrupt key file (%s) with a clear error', async (_name, text) => {
    await writeFile(join(dir, 'swarm.key'), text)
    const err = await loadSwarmKey(dir).catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_BAD_ARGUMENT' })
    expect(err.message).toContain('swarm.key')
    expect(err.hint).toBeTruthy()
  })

  it('writeSwarmKey refuses garbage', async () => {
    await expect(writeSwarmKey(dir, new Uint8Array(95))).rejects.toMatchObject({ code: 'ERR_BAD_ARGUMENT' })
    await expect(readFile(join(dir, 'swarm.key'))).rejects.toThrow()
  })
})
