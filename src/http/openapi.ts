/**
 * The API's OpenAPI 3.1 document, served at `/api/v1/openapi.json`. Written by hand, next to
 * the code it describes; the API tests validate every response they get against it, so the
 * two cannot drift apart unnoticed. Schemas are plain JSON Schema 2020-12.
 */
import { TASK_STATES } from '../agent/tasks/types.js'
import { ERROR_CODES } from '../common/errors.js'
import { VERSION } from '../common/version.js'
import { API_PREFIX } from './constants.js'

const ref = (name: string): { $ref: string } => ({ $ref: `#/components/schemas/${name}` })
const str = { type: 'string' }
const nonNeg = { type: 'integer', minimum: 0 }
const strList = { type: 'array', items: str }
const strMap = { type: 'object', additionalProperties: str }
const oneOrMore = { oneOf: [str, strList] }

const json = (schema: unknown): Record<string, unknown> => ({ 'application/json': { schema } })
const errorResponse = (description: string): Record<string, unknown> => ({ description, content: json(ref('Error')) })
const taskId = { name: 'id', in: 'path', required: true, description: 'A task id, a unique prefix of one, or a task name (NAME[i] for a shard)', schema: str }

const ERRORS = {
  400: errorResponse('Bad input: the message says what to fix'),
  401: errorResponse('No valid bearer token or session cookie'),
  403: errorResponse('Not allowed (a cookie-authenticated write from another origin, or a request the agent refuses)'),
  404: errorResponse('No such task or route')
}

const schemas = {
  Error: {
    type: 'object',
    required: ['error'],
    additionalProperties: false,
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        additionalProperties: false,
        properties: {
          code: { enum: Object.keys(ERROR_CODES), description: 'Stable; the same as the CLI prints' },
          message: str,
          hint: str
        }
      }
    }
  },
  TaskState: { enum: [...TASK_STATES] },
  TaskAttempt: {
    type: 'object',
    required: ['peer', 'host', 'started'],
    properties: {
      peer: str,
      host: str,
      started: nonNeg,
      ended: nonNeg,
      state: ref('TaskState'),
      exitCode: nonNeg,
      error: str,
      logFrom: nonNeg,
      began: { type: 'boolean' }
    }
  },
  TaskRecord: {
    type: 'object',
    description: 'A task as `vgrid task show --json` prints it. Times are milliseconds since the epoch.',
    required: ['id', 'owner', 'ownerHost', 'argv', 'state', 'created', 'deps', 'retries', 'attempts', 'attached', 'children'],
    properties: {
      id: { type: 'string', pattern: '^[0-9a-f]{16}$' },
      name: str,
      parent: { type: 'string', pattern: '^[0-9a-f]{16}$' },
      owner: str,
      ownerHost: str,
      submitter: str,
      user: { type: 'string', description: 'user@host, as the submitting member states it' },
      argv: strList,
      state: ref('TaskState'),
      exitCode: nonNeg,
      error: str,
      created: nonNeg,
      started: nonNeg,
      ended: nonNeg,
      peer: str,
      host: str,
      deps: {
        type: 'array',
        items: { type: 'object', required: ['kind', 'name', 'id'], properties: { kind: { enum: ['success', 'fail', 'any'] }, name: str, id: str } }
      },
      shard: { type: 'object', required: ['index', 'count'], properties: { index: nonNeg, count: { type: 'integer', minimum: 1 } } },
      retries: nonNeg,
      timeoutMs: nonNeg,
      attempts: { type: 'array', items: ref('TaskAttempt') },
      attached: { type: 'boolean' },
      children: { type: 'array', items: { type: 'string', pattern: '^[0-9a-f]{16}$' } },
      history: {
        type: 'array',
        items: { type: 'object', required: ['at', 'state', 'why'], properties: { at: nonNeg, state: ref('TaskState'), why: str } }
      }
    }
  },
  TaskList: {
    type: 'object',
    required: ['tasks', 'unreachable'],
    additionalProperties: false,
    properties: {
      tasks: { type: 'array', items: ref('TaskRecord'), description: 'In the order of submission; the tree is in parent and children' },
      unreachable: { ...strList, description: 'Members whose tasks could not be listed (peer ids)' }
    }
  },
  TaskReply: {
    type: 'object',
    required: ['task'],
    additionalProperties: false,
    properties: {
      task: ref('TaskRecord'),
      shards: { type: 'array', items: ref('TaskRecord'), description: 'Every shard, when the id named a fan-out by its name' }
    }
  },
  Gpu: {
    type: 'object',
    required: ['index', 'vendor', 'model', 'memoryBytes'],
    properties: { index: nonNeg, vendor: str, model: str, memoryBytes: nonNeg, uuid: str }
  },
  GpuUse: {
    type: 'object',
    required: ['index', 'task', 'who'],
    properties: { index: nonNeg, task: { type: 'string', description: 'The task holding the GPU' }, who: { type: 'string', description: 'user@host it runs for' } }
  },
  Peer: {
    type: 'object',
    description: 'A member as `vgrid peers --json` shows it',
    required: ['peer', 'addrs', 'version', 'resources', 'offer', 'load', 'lastSeenMs', 'self'],
    properties: {
      peer: str,
      seq: nonNeg,
      startedAt: nonNeg,
      addrs: strList,
      version: str,
      resources: {
        type: 'object',
        required: ['host', 'cpu', 'memBytes', 'gpus'],
        properties: {
          host: str,
          os: { type: 'object' },
          cpu: { type: 'object', required: ['model', 'cores'], properties: { model: str, cores: nonNeg } },
          memBytes: nonNeg,
          gpus: { type: 'array', items: ref('Gpu') }
        }
      },
      offer: {
        type: 'object',
        required: ['cpus', 'memBytes', 'gpus', 'pools', 'labels'],
        properties: {
          cpus: nonNeg,
          memBytes: nonNeg,
          gpus: { type: 'array', items: nonNeg },
          pools: strList,
          labels: strMap,
          maxTasks: nonNeg,
          onlyWhenIdle: { type: 'boolean' },
          isolation: { enum: ['sandbox', 'none', 'unavailable'] },
          acceptFrom: strList
        }
      },
      load: {
        type: 'object',
        required: ['cpusFree', 'memFree', 'gpusFree', 'running', 'queued', 'cpuUtil'],
        properties: {
          cpusFree: { type: 'number' },
          memFree: { type: 'number' },
          gpusFree: { type: 'array', items: nonNeg },
          running: nonNeg,
          queued: nonNeg,
          cpuUtil: { type: 'number' },
          ownerBusy: { type: 'boolean' },
          paused: { type: 'boolean' },
          draining: { type: 'boolean' },
          gpuUse: { type: 'array', items: ref('GpuUse') },
          storeRoom: { type: 'number' }
        }
      },
      leaving: { type: 'boolean' },
      every: nonNeg,
      lastSeenMs: { type: 'number' },
      self: { type: 'boolean', description: 'This agent' }
    }
  },
  PeerList: {
    type: 'object',
    required: ['peers'],
    additionalProperties: false,
    properties: { peers: { type: 'array', items: ref('Peer') } }
  },
  SubmitRequest: {
    type: 'object',
    description: 'The options of vbatch, checked as vbatch checks them. Without workspace the command runs in an empty scratch directory (as vbatch --no-sync).',
    required: ['argv'],
    additionalProperties: false,
    properties: {
      argv: { type: 'array', items: str, minItems: 1, description: 'The command and its arguments' },
      name: { type: 'string', description: '--name' },
      after: { ...oneOrMore, description: '--after NAME: start once NAME has ended' },
      afterSuccess: { ...oneOrMore, description: '--after-success NAME' },
      afterFail: { ...oneOrMore, description: '--after-fail NAME' },
      shards: { type: 'integer', minimum: 1, description: '-N' },
      gang: { type: 'boolean' },
      retries: { type: 'integer', minimum: 0 },
      timeout: { oneOf: [str, { type: 'number', minimum: 0 }], description: '90s, 15m, 2h, 1d, or seconds' },
      cpus: { type: 'integer', minimum: 0 },
      gpus: { type: 'integer', minimum: 0 },
      gpuModel: str,
      gpuMem: { oneOf: [str, { type: 'number', minimum: 0 }], description: '40G, or bytes' },
      mem: { oneOf: [str, { type: 'number', minimum: 0 }], description: '16G, or bytes' },
      pool: { ...oneOrMore, description: '-P: a shape when exactly cpu-N, gpu-N, gpu-MODEL or gpu-MODEL-N (cpu-8, gpu-a100, gpu-a100-2), else a pool' },
      labels: { ...strMap, description: '--label KEY=VAL: members labelled so' },
      on: { type: 'string', description: '--on: a peer id, a unique prefix, or a host name' },
      env: { ...strMap, description: '-e KEY=VAL' },
      workspace: { type: 'string', description: 'An absolute directory of the agent\'s machine, synced as vbatch syncs one' },
      cwd: { type: 'string', description: 'Relative to the workspace' },
      noSync: { type: 'boolean' }
    }
  },
  SubmitReply: {
    type: 'object',
    required: ['id', 'ids'],
    additionalProperties: false,
    properties: {
      id: { type: 'string', pattern: '^[0-9a-f]{16}$', description: 'The task (the first shard of a fan-out)' },
      ids: { type: 'array', items: { type: 'string', pattern: '^[0-9a-f]{16}$' }, minItems: 1, description: 'One id per shard' },
      url: { type: 'string', description: 'The task in the dashboard' }
    }
  }
}

const sse = (description: string): Record<string, unknown> => ({ description, content: { 'text/event-stream': { schema: str } } })

export const OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'vgrid agent API',
    version: VERSION,
    description: 'The API of one vgrid agent. Authenticate with `Authorization: Bearer TOKEN` (the token is in $VGRID_HOME/http.token) ' +
      'or with the session cookie that a `vgrid ui` login link sets. Writes with the cookie must come from the agent\'s own origin. ' +
      'Errors are {"error": {"code", "message", "hint"}} with the codes of the CLI.'
  },
  servers: [{ url: API_PREFIX }],
  security: [{ bearer: [] }, { session: [] }],
  paths: {
    '/peers': {
      get: {
        summary: 'The members of the grid, with what they lend, their load and who holds each GPU',
        responses: { 200: { description: 'The members', content: json(ref('PeerList')) }, 401: ERRORS[401] }
      }
    },
    '/tasks': {
      get: {
        summary: 'Every task of the grid (its tree through parent and children)',
        parameters: [
          { name: 'state', in: 'query', schema: str, description: 'Only these states (comma-separated)' },
          { name: 'name', in: 'query', schema: str, description: 'Only tasks of this name' },
          { name: 'submitter', in: 'query', schema: str, description: 'Only tasks submitted from this member (peer id) or for this user@host' }
        ],
        responses: { 200: { description: 'The tasks', content: json(ref('TaskList')) }, 400: ERRORS[400], 401: ERRORS[401] }
      },
      post: {
        summary: 'Submit a task, as vbatch does',
        requestBody: { required: true, content: json(ref('SubmitRequest')) },
        responses: {
          201: { description: 'Submitted', content: json(ref('SubmitReply')) },
          400: ERRORS[400],
          401: ERRORS[401],
          403: ERRORS[403],
          413: errorResponse('The body is larger than 1 MiB'),
          415: errorResponse('The body is not application/json'),
          422: errorResponse('No member could ever run it, or `on` names no member')
        }
      }
    },
    '/tasks/{id}': {
      get: {
        summary: 'One task',
        parameters: [taskId],
        responses: { 200: { description: 'The task', content: json(ref('TaskReply')) }, 400: ERRORS[400], 401: ERRORS[401], 404: ERRORS[404] }
      }
    },
    '/tasks/{id}/log': {
      get: {
        summary: 'Its output: text, or with follow=1 Server-Sent Events until it ends',
        description: 'With follow=1: `log` events ({"fd": 1|2, "text"}) as the output comes, then one `end` event (the task\'s summary); ' +
          'an `error` event ({"error": …}) if the log could not be read to its end.',
        parameters: [
          taskId,
          { name: 'follow', in: 'query', schema: { enum: ['0', '1', 'true', 'false'] } },
          { name: 'stream', in: 'query', schema: { enum: ['all', 'stdout', 'stderr'] }, description: 'Default all' }
        ],
        responses: {
          200: { description: 'The output so far', content: { 'text/plain': { schema: str }, 'text/event-stream': { schema: str } } },
          400: ERRORS[400],
          401: ERRORS[401],
          404: ERRORS[404]
        }
      }
    },
    '/tasks/{id}/cancel': {
      post: {
        summary: 'Cancel a task and its sub-tasks',
        parameters: [taskId],
        responses: { 200: { description: 'The task, cancelled', content: json(ref('TaskReply')) }, 401: ERRORS[401], 403: ERRORS[403], 404: ERRORS[404] }
      }
    },
    '/events': {
      get: {
        summary: 'What changes: members and this agent\'s tasks',
        description: 'Server-Sent Events: `hello` ({"members": [{peer, host}]}) first, then `member-joined` and `member-left` ({peer, host}) ' +
          'and `task` (a summary of a task this agent owns whose record changed: id, name, parent, state, exitCode, host, user, argv (its first 32 arguments, 256 characters each)…).',
        responses: { 200: sse('The event stream'), 401: ERRORS[401] }
      }
    },
    '/openapi.json': {
      get: { summary: 'This document', security: [], responses: { 200: { description: 'OpenAPI 3.1', content: json({ type: 'object' }) } } }
    }
  },
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: 'The token of $VGRID_HOME/http.token' },
      session: { type: 'apiKey', in: 'cookie', name: 'vgrid_session_PORT', description: 'Set by a `vgrid ui` login link' }
    },
    schemas
  }
} as const
