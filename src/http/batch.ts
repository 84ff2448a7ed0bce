/**
 * `POST /api/v1/tasks`: a JSON body with the fields of vbatch's options, turned into the
 * BatchRequest vbatch would send. The body becomes vbatch's own command line and goes through
 * vbatch's parser, so every check and every limit (cores, GPUs, sizes, names, dependencies,
 * shards, durations) is the CLI's, and so are the messages and hints.
 */
import fs from 'node:fs'
import path from 'node:path'
import { VgridError } from '../common/errors.js'
import type { BatchRequest } from '../protocol/control.js'
import { batchRequest, parseVbatchArgs } from '../cli/vbatch-args.js'
import { UsageError } from '../cli/usage-error.js'
import { checkRunDir, findWorkspace, type WorkspaceRef } from '../fs-sync/workspace.js'

/** The fields a body may hold, and their JSON types (the OpenAPI document says the same). */
export const SUBMIT_FIELDS = {
  argv: 'string[]',
  name: 'string',
  after: 'string[]',
  afterSuccess: 'string[]',
  afterFail: 'string[]',
  shards: 'integer',
  gang: 'boolean',
  retries: 'integer',
  timeout: 'duration',
  cpus: 'integer',
  gpus: 'integer',
  gpuModel: 'string',
  gpuMem: 'size',
  mem: 'size',
  pool: 'string[]',
  labels: 'map',
  on: 'string',
  env: 'map',
  workspace: 'string',
  cwd: 'string',
  noSync: 'boolean'
} as const

type FieldType = typeof SUBMIT_FIELDS[keyof typeof SUBMIT_FIELDS]

function bad (message: string, hint?: string): VgridError {
  return new VgridError('ERR_BAD_ARGUMENT', message, hint)
}

const WANTED: Record<FieldType, string> = {
  string: 'a string',
  'string[]': 'a list of strings (or one string)',
  integer: 'a whole number',
  boolean: 'true or false',
  duration: 'a duration such as "90s", "15m", "2h" or a number of seconds',
  size: 'a size such as "16G" or a number of bytes',
  map: 'an object of strings'
}

/** Checks one field's JSON type; returns it as vbatch's option values (strings). */
function values (field: string, type: FieldType, v: unknown): string[] {
  const fail = (): never => { throw bad(`${field}: expected ${WANTED[type]}`) }
  switch (type) {
    case 'string': return typeof v === 'string' ? [v] : fail()
    case 'string[]':
      if (typeof v === 'string') return [v]
      return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v as string[] : fail()
    case 'integer': return typeof v === 'number' && Number.isSafeInteger(v) ? [String(v)] : fail()
    case 'boolean': return typeof v === 'boolean' ? [] : fail()
    case 'duration': case 'size':
      if (typeof v === 'string') return [v]
      return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? [String(v)] : fail()
    case 'map': {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) fail()
      const entries = Object.entries(v as Record<string, unknown>)
      for (const [k, x] of entries) {
        if (typeof x !== 'string') fail()
        // `-e KEY` alone would copy the agent's own environment: a key always has its value.
        if (k === '' || k.includes('=')) throw bad(`${field}: ${JSON.stringify(k.slice(0, 64))} is not a valid key`)
      }
      return entries.map(([k, x]) => `${k}=${x as string}`)
    }
  }
}

/** Each field as the vbatch option it stands for. */
const FLAG: Record<string, string> = {
  name: '--name',
  after: '--after',
  afterSuccess: '--after-success',
  afterFail: '--after-fail',
  shards: '-N',
  retries: '--retries',
  timeout: '--timeout',
  cpus: '--cpus',
  gpus: '--gpus',
  gpuModel: '--gpu-model',
  gpuMem: '--gpu-mem',
  mem: '--mem',
  pool: '-P',
  labels: '--label',
  on: '--on',
  env: '-e',
  cwd: '--cwd'
}

/**
 * The body (already parsed JSON) as vbatch's arguments. Unknown fields are refused: a typo
 * (`gpu: 1`) silently ignored would run the task without what was asked.
 */
export function submitArgv (body: unknown): { args: string[], workspace?: string, noSync: boolean } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw bad('the body must be a JSON object', 'send {"argv": ["CMD", "ARG"…], …}')
  const b = body as Record<string, unknown>
  for (const k of Object.keys(b)) {
    if (!Object.hasOwn(SUBMIT_FIELDS, k)) throw bad(`unknown field ${JSON.stringify(k.slice(0, 64))}`, `the fields are ${Object.keys(SUBMIT_FIELDS).join(', ')}`)
  }
  const given = (k: keyof typeof SUBMIT_FIELDS): boolean => b[k] !== undefined && b[k] !== null
  if (!given('argv')) throw bad('argv is missing: the command and its arguments', 'send {"argv": ["python", "train.py"]}')
  const argv = values('argv', 'string[]', b.argv)
  if (argv.length === 0) throw bad('argv is empty: give the command and its arguments')
  const args: string[] = []
  for (const [k, flag] of Object.entries(FLAG)) {
    if (!given(k as keyof typeof SUBMIT_FIELDS)) continue
    // attached (`--name=V`, `-PV`), so a value that starts with - stays a value
    for (const v of values(k, SUBMIT_FIELDS[k as keyof typeof SUBMIT_FIELDS], b[k])) {
      if (flag.startsWith('--')) { args.push(`${flag}=${v}`); continue }
      if (v === '') throw bad(`${k}: expected a value, not an empty string`)
      args.push(`${flag}${v}`)
    }
  }
  const flag = (k: 'gang' | 'noSync'): boolean => {
    if (!given(k)) return false
    values(k, 'boolean', b[k])
    return b[k] === true
  }
  if (flag('gang')) args.push('--gang')
  const noSync = flag('noSync')
  let workspace: string | undefined
  if (given('workspace')) {
    workspace = values('workspace', 'string', b.workspace)[0]!
    if (noSync) throw bad('workspace and noSync contradict each other')
  }
  return { args: [...args, '--', ...argv], ...(workspace !== undefined ? { workspace } : {}), noSync }
}

/**
 * A directory of the agent's machine to sync, as vbatch --workspace takes it: absolute,
 * existing, and readable by the agent's user (the scan would fail later, less clearly).
 */
export function agentWorkspace (dir: string): WorkspaceRef {
  if (!path.isAbsolute(dir)) throw bad(`workspace ${dir}: must be an absolute directory of the agent's machine`)
  const ws = findWorkspace(dir, dir)
  try {
    fs.accessSync(ws.dir, fs.constants.R_OK | fs.constants.X_OK)
  } catch {
    throw bad(`workspace ${dir}: the agent's user cannot read it`)
  }
  return ws
}

/** The body as the BatchRequest vbatch would send for the same options. */
export function submitRequest (body: unknown): BatchRequest {
  const { args, workspace, noSync } = submitArgv(body)
  let inv
  try {
    // No environment: a field never copies the agent's variables.
    inv = parseVbatchArgs([...(noSync ? ['--no-sync'] : []), ...args], {})
  } catch (err) {
    if (err instanceof UsageError) throw bad(err.message, err.hint)
    throw err
  }
  if (inv.kind !== 'batch') throw bad('argv is missing')
  const ws = workspace !== undefined ? agentWorkspace(workspace) : undefined
  if (ws !== undefined && inv.spec.cwd !== undefined) checkRunDir(ws, inv.spec.cwd)
  return batchRequest(inv, ws)
}
