/**
 * The agent's configuration: what the owner shares and where the agent listens, resolved from
 * (highest first) command-line flags, `VGRID_*` environment variables, the `$VGRID_HOME/config`
 * file and defaults. Each setting is taken whole from the highest source that sets it (a
 * `--label` flag replaces the file's labels rather than adding to them).
 *
 * The config file is JSON; every field is optional:
 *   { "cpus": 8 | "all", "gpus": "0,1" | [0, 1] | "all" | "none", "mem": "64G" | 68719476736 | "all",
 *     "pools": ["lab"], "labels": { "rack": "b2" }, "listen": ["/ip4/0.0.0.0/tcp/7321"],
 *     "maxTasks": 4 | "unlimited", "nice": 10, "onlyWhenIdle": true, "acceptFrom": ["12D3KooW…"] | "all",
 *     "paused": true, "http": "127.0.0.1:7322" | "off", "httpCert": "/etc/vgrid/cert.pem", "httpKey": "/etc/vgrid/key.pem" }
 * (`paused` is written by `vgrid agent set --pause` and removed by `--resume`; no flag or
 * variable sets it.)
 * Environment: VGRID_CPUS, VGRID_GPUS, VGRID_MEM, VGRID_POOL ("a,b"), VGRID_LABELS
 * ("k=v,k2=v2": values from the environment cannot hold commas), VGRID_LISTEN ("/ip4/…,/ip6/…"),
 * VGRID_MAX_TASKS, VGRID_NICE, VGRID_ONLY_WHEN_IDLE (1/0, true/false), VGRID_ACCEPT_FROM ("id,id"),
 * VGRID_HTTP ("ADDR:PORT" or "off"), VGRID_HTTP_CERT, VGRID_HTTP_KEY.
 *
 * `vgrid agent set` changes the owner policy of a running agent (policyPatch → the agent) and
 * writes it into the config file (savePolicyPatch), so a restart keeps it.
 *
 * The CLI imports this file: keep it free of libp2p and other heavy imports.
 */
import type { IsolationConfig } from './isolation.js'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'
import { VgridError } from '../common/errors.js'
import { formatBytes, parseSize } from '../common/units.js'
import { looksLikePeerId, MAX_ACCEPT_FROM } from '../common/peer-id.js'
import type { Offer, Resources } from '../grid/types.js'
import { DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT, isLoopback, parseHttpAddress, type HttpAddress } from '../http/address.js'
import { LABEL_KEY_RE, MAX_CPUS, MAX_GPU_INDEX, MAX_LABEL_VALUE_CHARS, MAX_LABELS, MAX_POOLS, POOL_NAME_RE, describeShape, shapeName } from '../common/resources.js'

/** The port an agent listens on unless told otherwise; fixed so join tokens and firewalls stay simple. */
export const DEFAULT_PORT = 7321
/**
 * IPv4 only by default: an IPv6 wildcard listener is not verified on every network here.
 * Add `--listen /ip6/::/tcp/7321` (libp2p binds it IPv6-only, so both can coexist).
 */
export const DEFAULT_LISTEN = [`/ip4/0.0.0.0/tcp/${DEFAULT_PORT}`]
export const CONFIG_FILE_NAME = 'config'
export const CONFIG_FILE_MAX_BYTES = 64 * 1024

export const MAX_ADDRS = 32
export const MAX_ADDR_LENGTH = 512
export const MAX_JOIN_TOKEN_LENGTH = 8192
/** Guests run at this niceness unless told otherwise: below the owner's own work (0). */
export const DEFAULT_NICE = 10
/** The lowest priority there is. */
export const MAX_NICE = 19
/** `--max-tasks` at most this; more is the same as unlimited. */
export const MAX_MAX_TASKS = 100_000

export interface AgentFlags {
  /** The token itself, or `-`: read from stdin (the CLI reads it and puts the token here). */
  join?: string
  /** A file holding the token: kept off the command line, which every user of the machine sees. */
  joinFile?: string
  peer?: string | string[]
  listen?: string | string[]
  cpus?: string | number
  gpus?: string | number
  mem?: string
  cacheSize?: string
  keepResults?: string
  pool?: string | string[]
  label?: string | string[]
  maxTasks?: string | number
  nice?: string | number
  /** false: `--no-only-when-idle`. */
  onlyWhenIdle?: boolean | string
  /** `vgrid agent set --pause` / `--resume`. */
  pause?: boolean
  resume?: boolean
  isolation?: string
  guestNet?: string
  guestUser?: string
  guestShare?: string | string[]
  acceptFrom?: string | string[]
  /** `--http ADDR:PORT` or `off`. */
  http?: string
  httpCert?: string
  httpKey?: string
}

/** Where the agent serves its HTTP API and dashboard (src/http/). */
export interface HttpConfig extends HttpAddress {
  /** PEM files: served over TLS (required off loopback). */
  tls?: { certFile: string, keyFile: string }
  /**
   * The default address, nobody asked for it: when its port is taken (a second agent on this
   * machine) the agent goes on without HTTP and says so. An address asked for must be served.
   */
  ifFree?: boolean
}

export interface ShareConfig {
  /** Cores lent; undefined = all. */
  cpus?: number
  /** GPU indexes lent; undefined = all. */
  gpus?: number[] | 'none' | 'all'
  /** Memory lent; undefined = all. */
  memBytes?: number
  pools: string[]
  labels: Record<string, string>
}

/** How the machine lends, beyond what (ShareConfig). */
export interface OwnerPolicy {
  /** Guest commands at once; undefined = no limit. */
  maxTasks?: number
  /** Niceness of guest commands (and all they start), 0–19. */
  nice: number
  /** Lend only while the owner's own load is low (idle-monitor.ts). */
  onlyWhenIdle: boolean
  /** `--accept-from`: the peer ids of the only members whose commands run here; undefined = every member. */
  acceptFrom?: string[]
  /**
   * `vgrid agent set --pause`: no new command is taken (running ones go on). Saved in the
   * config file, so a paused machine stays paused across a restart until `--resume`.
   */
  paused?: boolean
}

/** What `vgrid agent set` changes; absent fields stay as they are. */
export interface PolicyPatch {
  cpus?: number | 'all'
  gpus?: number[] | 'none' | 'all'
  memBytes?: number | 'all'
  maxTasks?: number | 'unlimited'
  nice?: number
  onlyWhenIdle?: boolean
  /**
   * Peer ids, or 'all'. From the CLI, an entry may also be a member's host name or a unique
   * prefix of its peer id: the agent resolves it against its view (resolveAcceptFrom) before
   * the patch is applied or saved.
   */
  acceptFrom?: string[] | 'all'
  /** true: `--pause`; false: `--resume`. */
  paused?: boolean
}

export interface AgentConfig {
  /** Absolute. */
  home: string
  join?: string
  /** Cap of the chunk store ($VGRID_HOME/store); undefined = DEFAULT_STORE_CAP_BYTES (10 GiB). */
  cacheBytes?: number
  /** How long this agent keeps the results of another member's task for an owner that is away (held.ts). */
  keepResultsMs?: number
  peers: string[]
  listen: string[]
  share: ShareConfig
  policy: OwnerPolicy
  /** How guests are contained (DESIGN §5). */
  isolation: IsolationConfig
  /** The HTTP API and dashboard; absent = none (`--http off`). */
  http?: HttpConfig
}

/** `$VGRID_HOME`, else `~/.vgrid`; always absolute. */
export function vgridHome (env: NodeJS.ProcessEnv = process.env): string {
  const h = env.VGRID_HOME
  if (h !== undefined && h !== '') return resolve(h)
  const home = env.HOME !== undefined && isAbsolute(env.HOME) ? env.HOME : homedir()
  return join(home, '.vgrid')
}

/** Flags > VGRID_* > config file > defaults; ERR_BAD_ARGUMENT naming the source that is wrong. */
export function resolveAgentConfig (flags: AgentFlags, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const home = vgridHome(env)
  const file = readConfigFile(join(home, CONFIG_FILE_NAME))
  const e = (name: string): string | undefined => env[name] === undefined || env[name] === '' ? undefined : env[name]

  const cpus = pick(
    [flags.cpus, '--cpus'], [e('VGRID_CPUS'), 'VGRID_CPUS'], [file.cpus, file.where('cpus')], parseCpus)
  const gpus = pick(
    [flags.gpus, '--gpus'], [e('VGRID_GPUS'), 'VGRID_GPUS'], [file.gpus, file.where('gpus')], parseGpus)
  const memBytes = pick(
    [flags.mem, '--mem'], [e('VGRID_MEM'), 'VGRID_MEM'], [file.mem, file.where('mem')], parseMem)
  const cacheBytes = pick(
    [flags.cacheSize, '--cache-size'], [e('VGRID_CACHE_SIZE'), 'VGRID_CACHE_SIZE'], [file.cacheSize, file.where('cacheSize')], parseSizeValue)
  const pools = pick(
    [flags.pool, '--pool'], [e('VGRID_POOL'), 'VGRID_POOL'], [file.pools, file.where('pools')], parsePools) ?? []
  const labels = pick(
    [flags.label, '--label'], [e('VGRID_LABELS')?.split(','), 'VGRID_LABELS'], [file.labels, file.where('labels')], parseLabels) ??
    Object.create(null) as Record<string, string>
  const listen = pick(
    [flags.listen, '--listen'], [e('VGRID_LISTEN'), 'VGRID_LISTEN'], [file.listen, file.where('listen')],
    (v, src) => parseAddrs(v, src)) ?? [...DEFAULT_LISTEN]
  const peers = flags.peer === undefined ? [] : parseAddrs(flags.peer, '--peer')
  const maxTasks = pick(
    [flags.maxTasks, '--max-tasks'], [e('VGRID_MAX_TASKS'), 'VGRID_MAX_TASKS'], [file.maxTasks, file.where('maxTasks')], parseMaxTasks)
  const nice = pick(
    [flags.nice, '--nice'], [e('VGRID_NICE'), 'VGRID_NICE'], [file.nice, file.where('nice')], parseNice) ?? DEFAULT_NICE
  const onlyWhenIdle = pick(
    [flags.onlyWhenIdle, '--only-when-idle'], [e('VGRID_ONLY_WHEN_IDLE'), 'VGRID_ONLY_WHEN_IDLE'], [file.onlyWhenIdle, file.where('onlyWhenIdle')], parseBool) ?? false
  // At start the grid is not known yet: only peer ids (a host name is resolved by `agent set`).
  const acceptFrom = pick(
    [flags.acceptFrom, '--accept-from'], [e('VGRID_ACCEPT_FROM'), 'VGRID_ACCEPT_FROM'], [file.acceptFrom, file.where('acceptFrom')],
    (v, src) => parseAcceptFrom(v, src, false))

  const mode = pick(
    [flags.isolation, '--isolation'], [e('VGRID_ISOLATION'), 'VGRID_ISOLATION'], [file.isolation, file.where('isolation')],
    (v, src) => parseChoice(v, src, ['sandbox', 'none'] as const)) ?? 'sandbox'
  const net = pick(
    [flags.guestNet, '--guest-net'], [e('VGRID_GUEST_NET'), 'VGRID_GUEST_NET'], [file.guestNet, file.where('guestNet')],
    (v, src) => parseChoice(v, src, ['on', 'none'] as const)) ?? 'on'
  const guestUser = pick(
    [flags.guestUser, '--guest-user'], [e('VGRID_GUEST_USER'), 'VGRID_GUEST_USER'], [file.guestUser, file.where('guestUser')], parseUserName)
  const isolation: IsolationConfig = { mode, net: net === 'on' }
  if (guestUser !== undefined) isolation.guestUser = guestUser
  const shares = pick(
    [flags.guestShare, '--guest-share'], [e('VGRID_GUEST_SHARE')?.split(','), 'VGRID_GUEST_SHARE'], [file.guestShare, file.where('guestShare')], parseShares)
  if (shares !== undefined) isolation.shares = shares
  const config: AgentConfig = { home, peers, listen, share: { pools, labels }, policy: { nice, onlyWhenIdle }, isolation }
  if (cpus !== undefined && cpus !== 'all') config.share.cpus = cpus
  if (gpus !== undefined) config.share.gpus = gpus
  if (memBytes !== undefined && memBytes !== 'all') config.share.memBytes = memBytes
  if (maxTasks !== undefined && maxTasks !== 'unlimited') config.policy.maxTasks = maxTasks
  if (acceptFrom !== undefined && acceptFrom !== 'all') config.policy.acceptFrom = acceptFrom
  // Only `vgrid agent set` pauses: no flag or variable at start, so a restart cannot undo it by accident.
  if (file.paused !== undefined && parseBool(file.paused, file.where('paused'))) config.policy.paused = true
  const token = joinToken(flags, e('VGRID_JOIN_TOKEN'))
  if (token !== undefined) config.join = token
  if (cacheBytes !== undefined) config.cacheBytes = cacheBytes
  const keepResultsMs = pick(
    [flags.keepResults, '--keep-results'], [e('VGRID_KEEP_RESULTS'), 'VGRID_KEEP_RESULTS'], [file.keepResults, file.where('keepResults')],
    (v, src) => parseKeep(v, src))
  if (keepResultsMs !== undefined) config.keepResultsMs = keepResultsMs
  const http = resolveHttp(
    pick([flags.http, '--http'], [e('VGRID_HTTP'), 'VGRID_HTTP'], [file.http, file.where('http')], parseHttp),
    pick([flags.httpCert, '--http-cert'], [e('VGRID_HTTP_CERT'), 'VGRID_HTTP_CERT'], [file.httpCert, file.where('httpCert')], parseFile),
    pick([flags.httpKey, '--http-key'], [e('VGRID_HTTP_KEY'), 'VGRID_HTTP_KEY'], [file.httpKey, file.where('httpKey')], parseFile))
  if (http !== undefined) config.http = http
  return config
}

/**
 * The HTTP address with its TLS files. Off loopback the API (which runs commands as this
 * user) would cross the network in clear, bearer token included: refused without TLS.
 */
function resolveHttp (addr: HttpAddress | 'off' | undefined, certFile: string | undefined, keyFile: string | undefined): HttpConfig | undefined {
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new VgridError('ERR_BAD_ARGUMENT', `--http-${certFile === undefined ? 'cert' : 'key'} is missing: TLS needs both a certificate and its key`,
      'give both --http-cert FILE and --http-key FILE (PEM)')
  }
  if (addr === 'off') return undefined
  const out: HttpConfig = addr ?? { host: DEFAULT_HTTP_HOST, port: DEFAULT_HTTP_PORT, ifFree: true }
  if (certFile !== undefined && keyFile !== undefined) out.tls = { certFile, keyFile }
  else if (!isLoopback(out.host)) {
    throw new VgridError('ERR_BAD_ARGUMENT', `--http ${out.host}:${out.port}: an address other than loopback needs TLS`,
      'give --http-cert FILE and --http-key FILE (PEM), or serve on 127.0.0.1 and reach it from elsewhere through `ssh -L 7322:127.0.0.1:7322 HOST`')
  }
  return out
}

function parseHttp (v: unknown, src: string): HttpAddress | 'off' {
  if (typeof v !== 'string') throw arg(src, v, 'expected ADDR:PORT, such as 127.0.0.1:7322, or off')
  const r = parseHttpAddress(v)
  if (typeof r === 'object' && 'error' in r) throw arg(src, v, r.error)
  return r
}

function parseFile (v: unknown, src: string): string {
  if (typeof v !== 'string' || v.trim() === '' || v.includes('\0')) throw arg(src, v, 'expected a file')
  return resolve(v)
}

/**
 * `vgrid agent set`'s flags as a patch; ERR_BAD_ARGUMENT for a bad value. Only the policy
 * flags may be given (the CLI refuses the others).
 */
export function policyPatch (flags: AgentFlags): PolicyPatch {
  const patch: PolicyPatch = {}
  if (flags.cpus !== undefined) patch.cpus = parseCpus(flags.cpus, '--cpus')
  if (flags.gpus !== undefined) patch.gpus = parseGpus(flags.gpus, '--gpus')
  if (flags.mem !== undefined) patch.memBytes = parseMem(flags.mem, '--mem')
  if (flags.maxTasks !== undefined) patch.maxTasks = parseMaxTasks(flags.maxTasks, '--max-tasks')
  if (flags.nice !== undefined) patch.nice = parseNice(flags.nice, '--nice')
  if (flags.onlyWhenIdle !== undefined) patch.onlyWhenIdle = parseBool(flags.onlyWhenIdle, '--only-when-idle')
  if (flags.acceptFrom !== undefined) patch.acceptFrom = parseAcceptFrom(flags.acceptFrom, '--accept-from', true)
  if (flags.pause === true && flags.resume === true) {
    throw new VgridError('ERR_BAD_ARGUMENT', '--pause and --resume cannot be given together', 'give one: --pause stops lending, --resume lends again')
  }
  if (flags.pause === true) patch.paused = true
  if (flags.resume === true) patch.paused = false
  return patch
}

/** A patch as it arrived over the control socket: the same checks as the flags. */
export function checkPolicyPatch (v: Record<string, unknown>): PolicyPatch {
  const patch: PolicyPatch = {}
  const src = (k: string): string => `vgrid agent set: ${k}`
  const known = ['cpus', 'gpus', 'memBytes', 'maxTasks', 'nice', 'onlyWhenIdle', 'acceptFrom', 'paused']
  for (const k of Object.keys(v)) if (!known.includes(k)) throw arg(src(k), v[k], `unknown setting (known: ${known.join(', ')})`)
  if (v.cpus !== undefined) patch.cpus = parseCpus(v.cpus, src('cpus'))
  if (v.gpus !== undefined) patch.gpus = parseGpus(v.gpus, src('gpus'))
  if (v.memBytes !== undefined) patch.memBytes = parseMem(v.memBytes, src('memBytes'))
  if (v.maxTasks !== undefined) patch.maxTasks = parseMaxTasks(v.maxTasks, src('maxTasks'))
  if (v.nice !== undefined) patch.nice = parseNice(v.nice, src('nice'))
  if (v.onlyWhenIdle !== undefined) patch.onlyWhenIdle = parseBool(v.onlyWhenIdle, src('onlyWhenIdle'))
  if (v.acceptFrom !== undefined) patch.acceptFrom = parseAcceptFrom(v.acceptFrom, src('acceptFrom'), true)
  if (v.paused !== undefined) patch.paused = parseBool(v.paused, src('paused'))
  return patch
}

/** The share and policy after a patch; the inputs are not changed. */
export function applyPolicyPatch (share: ShareConfig, policy: OwnerPolicy, patch: PolicyPatch): { share: ShareConfig, policy: OwnerPolicy } {
  const s: ShareConfig = { ...share, pools: [...share.pools], labels: { ...share.labels } }
  const p: OwnerPolicy = { ...policy }
  if (patch.cpus === 'all') delete s.cpus
  else if (patch.cpus !== undefined) s.cpus = patch.cpus
  if (patch.gpus !== undefined) s.gpus = patch.gpus
  if (patch.memBytes === 'all') delete s.memBytes
  else if (patch.memBytes !== undefined) s.memBytes = patch.memBytes
  if (patch.maxTasks === 'unlimited') delete p.maxTasks
  else if (patch.maxTasks !== undefined) p.maxTasks = patch.maxTasks
  if (patch.nice !== undefined) p.nice = patch.nice
  if (patch.onlyWhenIdle !== undefined) p.onlyWhenIdle = patch.onlyWhenIdle
  if (patch.acceptFrom === 'all') delete p.acceptFrom
  else if (patch.acceptFrom !== undefined) p.acceptFrom = [...patch.acceptFrom]
  if (patch.paused === true) p.paused = true
  else if (patch.paused === false) delete p.paused
  return { share: s, policy: p }
}

/**
 * Writes the patch into `$VGRID_HOME/config` (other fields kept; written whole and renamed
 * into place, so a crash leaves the old file or the new one). Returns the file's path.
 * A flag or VGRID_* variable given at the next start still wins over what is written here.
 */
export function savePolicyPatch (home: string, patch: PolicyPatch): string {
  const path = join(home, CONFIG_FILE_NAME)
  // Checked as a start would check it: never write on top of a file the agent could not read.
  const current = readConfigFile(path)
  const doc: Record<string, unknown> = {}
  for (const k of FILE_FIELDS) if (current[k] !== undefined) doc[k] = current[k]
  if (patch.cpus !== undefined) doc.cpus = patch.cpus
  if (patch.gpus !== undefined) doc.gpus = Array.isArray(patch.gpus) ? patch.gpus.join(',') : patch.gpus
  if (patch.memBytes !== undefined) doc.mem = patch.memBytes === 'all' ? 'all' : sizeText(patch.memBytes)
  if (patch.maxTasks !== undefined) doc.maxTasks = patch.maxTasks
  if (patch.nice !== undefined) doc.nice = patch.nice
  if (patch.onlyWhenIdle !== undefined) doc.onlyWhenIdle = patch.onlyWhenIdle
  if (patch.acceptFrom !== undefined) {
    // Checked as a start reads it: a name never reaches the file (the agent resolved it).
    doc.acceptFrom = parseAcceptFrom(patch.acceptFrom, 'acceptFrom', false)
  }
  if (patch.paused === true) doc.paused = true
  else if (patch.paused === false) delete doc.paused
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 })
  renameSync(tmp, path)
  return path
}

/** `64G` when that is exact, else the number of bytes. */
function sizeText (n: number): string | number {
  for (const [unit, size] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) {
    if (n % size === 0) return `${n / size}${unit}`
  }
  return n
}

/** The offer: the share clamped to what the machine has, with a warning for each clamp. */
export function computeOffer (share: ShareConfig, resources: Resources): { offer: Offer, warnings: string[] } {
  const warnings: string[] = []
  const cores = resources.cpu.cores
  let cpus = share.cpus ?? cores
  if (cpus > cores) {
    warnings.push(`--cpus ${cpus} is more than this machine's ${cores} cores; sharing ${cores}`)
    cpus = cores
  }
  let memBytes = share.memBytes ?? resources.memBytes
  if (memBytes > resources.memBytes) {
    warnings.push(`--mem ${formatBytes(memBytes)} is more than this machine's ${formatBytes(resources.memBytes)}; sharing all of it`)
    memBytes = resources.memBytes
  }
  const present = resources.gpus.map(g => g.index).sort((a, b) => a - b)
  let gpus: number[]
  if (share.gpus === 'none') gpus = []
  else if (share.gpus === undefined || share.gpus === 'all') gpus = present
  else {
    gpus = share.gpus.filter(i => present.includes(i))
    const unknown = share.gpus.filter(i => !present.includes(i))
    if (unknown.length > 0) {
      const have = present.length === 0 ? 'this machine has no GPUs' : `this machine has ${present.join(',')}`
      warnings.push(`--gpus: no GPU with index ${unknown.join(',')} (${have}); not shared`)
    }
  }
  return { offer: { cpus, memBytes, gpus, pools: [...share.pools], labels: { ...share.labels } }, warnings }
}

/** A pool name, or ERR_BAD_ARGUMENT saying what a pool name may be. */
export function validatePoolName (name: string, src = '--pool'): string {
  if (!POOL_NAME_RE.test(name)) {
    throw arg(src, name, 'a pool name is 1–63 of a-z 0-9 . _ - and starts with a letter or digit', 'pool names are lowercase')
  }
  // `-P` reads a shape before a pool: a pool named so could never be asked for.
  const shape = shapeName(name)
  if (shape !== undefined) {
    throw arg(src, name, `it is a resource shape (-P ${name} asks for ${describeShape(shape)}); a pool may be named anything that is not exactly cpu-N, gpu-N, gpu-MODEL or gpu-MODEL-N`,
      `name the pool otherwise, e.g. ${name.replace(/^(cpu|gpu)-/i, '$1s-')}`)
  }
  return name
}

/** `key=value` → [key, value], or ERR_BAD_ARGUMENT. */
export function parseLabel (s: string, src = '--label'): [string, string] {
  const eq = s.indexOf('=')
  if (eq < 0) throw arg(src, s, 'a label is key=value')
  const key = s.slice(0, eq)
  const value = s.slice(eq + 1)
  if (!LABEL_KEY_RE.test(key)) throw arg(src, s, 'a label key is 1–63 of A-Z a-z 0-9 . _ / -')
  if (value.length > MAX_LABEL_VALUE_CHARS) throw arg(src, s, `a label value is at most ${MAX_LABEL_VALUE_CHARS} characters`)
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value)) throw arg(src, s, 'a label value may not hold newlines or other control characters')
  return [key, value]
}

// ── parsers: (value from one source, name of that source) → validated value ──

type Parser<T> = (v: unknown, src: string) => T

function pick<T> (flag: [unknown, string], env: [unknown, string], file: [unknown, string], parse: Parser<T>): T | undefined {
  // every source is checked, so a bad file is reported even when a flag overrides it
  const values = [flag, env, file].map(([v, src]) => v === undefined ? undefined : { v: parse(v, src) })
  return values.find(x => x !== undefined)?.v
}

function parseChoice<T extends string> (v: unknown, src: string, choices: readonly T[]): T {
  const t = typeof v === 'string' ? v.trim().toLowerCase() : v
  if (typeof t !== 'string' || !(choices as readonly string[]).includes(t)) throw arg(src, v, `expected ${choices.join(' or ')}`)
  return t as T
}

/** `DIR` (read-only) or `DIR:rw`, absolute; a list or one. */
function parseShares (v: unknown, src: string): Array<{ path: string, rw: boolean }> {
  const items = (Array.isArray(v) ? v : [v]).flatMap((x) => typeof x === 'string' ? x.split(',') : [x]).filter((x) => x !== '')
  return items.map((x) => {
    if (typeof x !== 'string') throw arg(src, v, 'expected DIR or DIR:rw')
    const rw = x.endsWith(':rw')
    const dir = x.replace(/:(rw|ro)$/, '')
    if (!isAbsolute(dir) || dir.includes('\0')) throw arg(src, x, 'expected an absolute directory, such as /data or /scratch:rw')
    if (dir === '/' || ['/proc', '/dev', '/sys', '/run'].some((d) => dir === d || dir.startsWith(`${d}/`))) throw arg(src, x, 'that directory cannot be shared with guests')
    return { path: resolve(dir), rw }
  })
}

function parseUserName (v: unknown, src: string): string {
  if (typeof v !== 'string' || !/^[a-z_][a-z0-9_.-]{0,31}\$?$|^\d{1,10}$/i.test(v.trim())) throw arg(src, v, 'expected a user name of this machine, such as nobody')
  return v.trim()
}

function parseCpus (v: unknown, src: string): number | 'all' {
  if (typeof v === 'string' && v.trim().toLowerCase() === 'all') return 'all'
  const n = typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_CPUS) {
    throw arg(src, v, 'expected a whole number of cores, such as 8 (0: lend none), or all')
  }
  return n
}

function parseMaxTasks (v: unknown, src: string): number | 'unlimited' {
  if (typeof v === 'string' && v.trim().toLowerCase() === 'unlimited') return 'unlimited'
  const n = typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_MAX_TASKS) {
    throw arg(src, v, `expected how many guest commands may run at once (0 to ${MAX_MAX_TASKS}; 0: none), or unlimited`)
  }
  return n
}

function parseNice (v: unknown, src: string): number {
  const n = typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_NICE) {
    throw arg(src, v, `expected a niceness from 0 (the owner's own priority) to ${MAX_NICE} (the lowest): a guest never runs above the owner`)
  }
  return n
}

function parseBool (v: unknown, src: string): boolean {
  if (typeof v === 'boolean') return v
  const s = typeof v === 'string' ? v.trim().toLowerCase() : undefined
  if (s === '1' || s === 'true' || s === 'yes') return true
  if (s === '0' || s === 'false' || s === 'no') return false
  throw arg(src, v, 'expected true or false (or 1 or 0)')
}

/**
 * `--accept-from`: `all`, or members by peer id (comma-separated or repeated). With `names`
 * (`vgrid agent set`, whose agent sees the grid), also host names and unique prefixes of
 * peer ids, resolved by the agent.
 */
function parseAcceptFrom (v: unknown, src: string, names: boolean): string[] | 'all' {
  const items = listOf(v, src, 'peer ids').flatMap(s => s.split(',')).map(s => s.trim()).filter(s => s !== '')
  if (items.length === 1 && items[0]!.toLowerCase() === 'all') return 'all'
  const what = names
    ? 'expected all, or members by peer id, host name or a unique prefix of a peer id (see `vgrid peers`)'
    : 'expected all, or members by peer id (`vgrid peers` shows them)'
  if (items.length === 0) throw arg(src, v, what)
  if (items.length > MAX_ACCEPT_FROM) throw arg(src, v, `at most ${MAX_ACCEPT_FROM} members`)
  for (const it of items) {
    if (it.toLowerCase() === 'all') throw arg(src, v, 'all cannot be combined with members')
    if (names ? !/^[A-Za-z0-9._-]{1,253}$/.test(it) : !looksLikePeerId(it)) {
      throw arg(src, it, what, names ? undefined : 'a host name can be given to `vgrid agent set --accept-from` once that member is in the grid: it is saved as its peer id')
    }
  }
  return [...new Set(items)]
}

function parseGpus (v: unknown, src: string): number[] | 'none' | 'all' {
  const expected = 'expected none, all, or GPU indexes such as 0,1 (indexes as nvidia-smi numbers them, not a count)'
  let items: unknown[]
  if (typeof v === 'number') items = [v]
  else if (Array.isArray(v)) items = v
  else if (typeof v === 'string') {
    const s = v.trim().toLowerCase()
    if (s === 'none' || s === 'all') return s
    items = s.split(',').map(x => x.trim())
  } else throw arg(src, v, expected)
  if (items.length === 0) throw arg(src, v, expected)
  const out = new Set<number>()
  for (const it of items) {
    const n = typeof it === 'string' && /^\d{1,4}$/.test(it) ? Number(it) : it
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_GPU_INDEX) throw arg(src, v, expected)
    out.add(n)
  }
  return [...out].sort((a, b) => a - b)
}

function parseMem (v: unknown, src: string): number | 'all' {
  if (typeof v === 'string' && v.trim().toLowerCase() === 'all') return 'all'
  return parseSizeValue(v, src)
}

const KEEP_RE = /^(\d+(?:\.\d+)?)(m|h|d)$/
const KEEP_UNITS_MS: Record<string, number> = { m: 60_000, h: 3600_000, d: 86400_000 }
/** `--keep-results`: minutes, hours or days, such as 7d or 12h. */
function parseKeep (v: unknown, src: string): number {
  const m = typeof v === 'string' ? KEEP_RE.exec(v.trim().toLowerCase()) : null
  const ms = m === null ? NaN : Math.round(Number(m[1]) * KEEP_UNITS_MS[m[2]!]!)
  if (!(ms >= 60_000) || ms > 3650 * 86400_000) throw arg(src, v, 'expected a duration from 1m to 3650d, such as 7d or 12h')
  return ms
}

function parseSizeValue (v: unknown, src: string): number {
  if (typeof v !== 'string' && typeof v !== 'number') throw arg(src, v, 'expected a size such as 64G')
  const n = parseSize(v, src)
  if (n === 0) throw arg(src, v, 'expected a size above zero, such as 64G')
  return n
}

function parsePools (v: unknown, src: string): string[] {
  const names = listOf(v, src, 'pool names').flatMap(s => s.split(',')).map(s => s.trim()).filter(s => s !== '')
  if (names.length > MAX_POOLS) throw arg(src, v, `at most ${MAX_POOLS} pools`)
  return [...new Set(names.map(n => validatePoolName(n, src)))]
}

function parseLabels (v: unknown, src: string): Record<string, string> {
  let pairs: Array<[string, string]>
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    pairs = Object.entries(v).map(([k, val]) => {
      if (typeof val !== 'string') throw arg(`${src}.${k}`, val, 'a label value is a string')
      return parseLabel(`${k}=${val}`, src)
    })
  } else {
    pairs = listOf(v, src, 'key=value labels').filter(s => s.trim() !== '').map(s => parseLabel(s.trim(), src))
  }
  if (pairs.length > MAX_LABELS) throw arg(src, v, `at most ${MAX_LABELS} labels`)
  const out: Record<string, string> = Object.create(null)
  for (const [k, val] of pairs) out[k] = val
  return out
}

/** Multiaddr-shaped strings; the agent parses them fully. */
function parseAddrs (v: unknown, src: string): string[] {
  const addrs = listOf(v, src, 'multiaddrs').flatMap(s => s.split(',')).map(s => s.trim()).filter(s => s !== '')
  if (addrs.length === 0) throw arg(src, v, 'expected a multiaddr such as /ip4/192.168.1.5/tcp/7321')
  if (addrs.length > MAX_ADDRS) throw arg(src, v, `at most ${MAX_ADDRS} addresses`)
  for (const a of addrs) {
    if (!a.startsWith('/') || a.length > MAX_ADDR_LENGTH || /\s/.test(a)) {
      throw arg(src, a, `expected a multiaddr of at most ${MAX_ADDR_LENGTH} characters such as /ip4/192.168.1.5/tcp/7321`)
    }
  }
  return [...new Set(addrs)]
}

/** The join token of `flags` (--join, --join-file) or VGRID_JOIN_TOKEN; ERR_BAD_ARGUMENT naming the source that is wrong. */
export function resolveJoinToken (flags: Pick<AgentFlags, 'join' | 'joinFile'>, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = env.VGRID_JOIN_TOKEN
  return joinToken(flags, v === undefined || v === '' ? undefined : v)
}

/** --join, else --join-file, else VGRID_JOIN_TOKEN (never both flags: which would win is a guess). */
function joinToken (flags: AgentFlags, fromEnv: string | undefined): string | undefined {
  if (flags.join !== undefined && flags.joinFile !== undefined) {
    throw new VgridError('ERR_BAD_ARGUMENT', '--join and --join-file both give a join token', 'give one of them')
  }
  if (flags.join === '-') {
    throw arg('--join', '-', 'the token on stdin is read by the vgrid command', 'run `vgrid agent --join -` with the token on its standard input')
  }
  if (flags.join !== undefined) return parseJoin(flags.join, '--join')
  if (flags.joinFile !== undefined) return parseJoin(readJoinFile(flags.joinFile), `--join-file ${flags.joinFile}`)
  if (fromEnv !== undefined) return parseJoin(fromEnv, 'VGRID_JOIN_TOKEN')
  return undefined
}

function readJoinFile (file: unknown): string {
  if (typeof file !== 'string' || file === '') throw arg('--join-file', file, 'expected the path of a file holding the join token')
  try {
    const text = readFileSync(file)
    if (text.byteLength > MAX_JOIN_TOKEN_LENGTH) throw arg('--join-file', file, `longer than ${MAX_JOIN_TOKEN_LENGTH} bytes: not a join token`)
    return text.toString('utf8')
  } catch (err) {
    if (err instanceof VgridError) throw err
    throw arg('--join-file', file, `cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      'put the token printed by `vgrid join-token` on a member in a file only you can read (chmod 600)')
  }
}

function parseJoin (v: unknown, src: string): string {
  if (typeof v !== 'string' || v.trim() === '' || v.trim().length > MAX_JOIN_TOKEN_LENGTH || /\s/.test(v.trim())) {
    // never the value itself: it is the grid's secret, or a file's contents
    throw new VgridError('ERR_BAD_ARGUMENT', `${src}: not a join token: expected one word, the token printed by \`vgrid join-token\` on a member of the grid`,
      typeof v === 'string' && v.trim() === '' ? 'it is empty' : undefined)
  }
  return v.trim()
}

function listOf (v: unknown, src: string, what: string): string[] {
  const items = Array.isArray(v) ? v : [v]
  for (const s of items) if (typeof s !== 'string') throw arg(src, v, `expected ${what} as text`)
  return items as string[]
}

function arg (src: string, value: unknown, what: string, hint?: string): VgridError {
  let shown = typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) || (value !== null && typeof value === 'object') ? JSON.stringify(value) : String(value)
  if (shown.length > 80) shown = `${shown.slice(0, 80)}…`
  return new VgridError('ERR_BAD_ARGUMENT', `${src}: ${shown} is not valid: ${what}`, hint)
}

// ── the config file ──

const FILE_FIELDS = ['cpus', 'gpus', 'mem', 'cacheSize', 'keepResults', 'pools', 'labels', 'listen', 'maxTasks', 'nice', 'onlyWhenIdle', 'acceptFrom', 'paused', 'isolation', 'guestNet', 'guestUser', 'guestShare', 'http', 'httpCert', 'httpKey'] as const
type FileFields = Partial<Record<(typeof FILE_FIELDS)[number], unknown>>

function readConfigFile (path: string): FileFields & { where: (field: string) => string } {
  const where = (field: string): string => `${path}: field "${field}"`
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { where }
    throw new VgridError('ERR_BAD_ARGUMENT', `cannot read ${path}: ${(err as Error).message}`)
  }
  const fix = `fix or remove ${path}; it is JSON such as {"cpus": 8, "gpus": "0,1", "mem": "64G", "pools": ["lab"], "labels": {"rack": "b2"}}`
  if (Buffer.byteLength(text) > CONFIG_FILE_MAX_BYTES) {
    throw new VgridError('ERR_BAD_ARGUMENT', `${path} is larger than ${CONFIG_FILE_MAX_BYTES} bytes`, fix)
  }
  if (text.trim() === '') return { where }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new VgridError('ERR_BAD_ARGUMENT', `${path} is not valid JSON: ${(err as Error).message}`, fix)
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new VgridError('ERR_BAD_ARGUMENT', `${path} must hold a JSON object`, fix)
  }
  const out: FileFields = {}
  for (const [k, v] of Object.entries(doc)) {
    // a typo ("pool", "memory") silently ignored would share more than the owner meant
    if (!(FILE_FIELDS as readonly string[]).includes(k)) {
      throw new VgridError('ERR_BAD_ARGUMENT', `${path}: unknown field "${k}" (known: ${FILE_FIELDS.join(', ')})`, fix)
    }
    if (v !== null) out[k as keyof FileFields] = v
  }
  return { ...out, where }
}
