import { describe, it, expect } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { submitArgv, submitRequest } from '../../src/http/batch.js'
import { batchRequest, parseVbatchArgs, type VbatchRun } from '../../src/cli/vbatch-args.js'
import { findWorkspace } from '../../src/fs-sync/workspace.js'
import { VgridError } from '../../src/common/errors.js'

/** What vbatch sends for this command line (without a workspace). */
function vbatch (args: string[]): ReturnType<typeof batchRequest> {
  return batchRequest(parseVbatchArgs(args, {}) as VbatchRun)
}

function refused (body: unknown): VgridError {
  try {
    submitRequest(body)
  } catch (err) {
    expect(err).toBeInstanceOf(VgridError)
    return err as VgridError
  }
  throw new Error(`accepted ${JSON.stringify(body)}`)
}

describe('POST /tasks as vbatch', () => {
  it('makes the request vbatch makes for the same options', () => {
    expect(submitRequest({
      argv: ['python', '-u', 'train.py'], name: 'train', afterSuccess: ['prep'], after: 'fetch', shards: 4, gang: true, retries: 2, timeout: '2h',
      cpus: 4, gpus: 1, gpuModel: 'a100', gpuMem: '40G', mem: 16 * 2 ** 30, pool: 'lab', labels: { room: 'b12' }, env: { SEED: '7', EMPTY: '' }
    })).toEqual(vbatch([
      '--name', 'train', '--after', 'fetch', '--after-success', 'prep', '-N', '4', '--gang', '--retries', '2', '--timeout', '2h', '--cpus', '4', '--gpus', '1',
      '--gpu-model', 'a100', '--gpu-mem', '40G', '--mem', '16G', '-P', 'lab', '--label', 'room=b12', '-e', 'SEED=7', '-e', 'EMPTY=', 'python', '-u', 'train.py'
    ]))
  })

  it('keeps values that look like options as values, and a command that does too as the command', () => {
    const r = submitRequest({ argv: ['--help'], name: '-x', env: { K: '--v' } })
    expect(r.spec.argv).toEqual(['--help'])
    expect(r.name).toBe('-x')
    expect(r.spec.env).toEqual({ K: '--v' })
  })

  it('takes a task name that is HTML as it is: it is data', () => {
    expect(submitRequest({ argv: ['true'], name: '<img/src=x/onerror=alert(1)>' }).name).toBe('<img/src=x/onerror=alert(1)>')
  })

  it('gives the limits and messages of vbatch', () => {
    const e = refused({ argv: ['true'], cpus: 10_000_000 })
    expect(e.code).toBe('ERR_BAD_ARGUMENT')
    expect(() => parseVbatchArgs(['--cpus', '10000000', 'true'], {})).toThrow(e.message)
    expect(refused({ argv: ['true'], shards: 0 }).message).toMatch(/at least one shard/)
    expect(refused({ argv: ['true'], timeout: 'soon' }).hint).toMatch(/90s, 15m/)
    expect(refused({ argv: ['true'], gpuModel: 'a100' }).hint).toMatch(/--gpus N/)
    expect(refused({ argv: ['true'], name: 'a b' }).message).toMatch(/no blanks/)
  })

  it.each<[string, unknown, RegExp]>([
    ['not an object', ['true'], /must be a JSON object/],
    ['no argv', {}, /argv is missing/],
    ['an empty argv', { argv: [] }, /argv is empty/],
    ['an unknown field', { argv: ['true'], gpu: 1 }, /unknown field "gpu"/],
    ['a prototype key', JSON.parse('{"argv":["true"],"__proto__":{"cpus":9}}'), /unknown field "__proto__"/],
    ['a number as text', { argv: ['true'], cpus: '2' }, /cpus: expected a whole number/],
    ['a fraction of a core', { argv: ['true'], cpus: 1.5 }, /cpus: expected a whole number/],
    ['argv of numbers', { argv: [1, 2] }, /argv: expected a list of strings/],
    ['an env value that is not text', { argv: ['true'], env: { A: 1 } }, /env: expected an object of strings/],
    ['an env key with =', { argv: ['true'], env: { 'A=B': 'c' } }, /env: "A=B" is not a valid key/],
    ['an empty pool', { argv: ['true'], pool: '' }, /pool: expected a value/],
    ['gang as text', { argv: ['true'], gang: 'yes' }, /gang: expected true or false/],
    ['a relative workspace', { argv: ['true'], workspace: 'ws' }, /must be an absolute directory/],
    ['a workspace that does not exist', { argv: ['true'], workspace: '/nonexistent/vgrid-ws' }, /does not exist/],
    ['a workspace and noSync', { argv: ['true'], workspace: '/tmp', noSync: true }, /contradict/],
    ['--gang with --on', { argv: ['true'], shards: 2, gang: true, on: 'x' }, /cannot be combined with --on/]
  ])('refuses %s', (_what, body, message) => {
    expect(refused(body).message).toMatch(message)
  })

  it('runs without a workspace unless given one, which is synced as vbatch --workspace would', () => {
    expect(submitRequest({ argv: ['true'] }).workspace).toBeUndefined()
    expect(submitRequest({ argv: ['true'], noSync: true }).workspace).toBeUndefined()
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-http-ws-'))
    fs.mkdirSync(path.join(ws, 'sub'))
    try {
      const r = submitRequest({ argv: ['true'], workspace: ws, cwd: 'sub' })
      expect(r.workspace).toEqual(findWorkspace(ws, ws))
      expect(r.spec.cwd).toBe('sub')
      expect(refused({ argv: ['true'], workspace: ws, cwd: 'nope' }).message).toMatch(/is not a directory of the workspace/)
      expect(refused({ argv: ['true'], workspace: ws, cwd: '../x' }).message).toMatch(/leaves the workspace/)
    } finally {
      fs.rmSync(ws, { recursive: true })
    }
  })

  it('turns the body into vbatch options with their values attached', () => {
    expect(submitArgv({ argv: ['ls'], cpus: 2, pool: ['lab', 'gpu-1'], after: ['a', 'b'] }).args)
      .toEqual(['--after=a', '--after=b', '--cpus=2', '-Plab', '-Pgpu-1', '--', 'ls'])
  })
})
