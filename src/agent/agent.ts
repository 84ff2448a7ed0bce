/**
 * The agent: the composition root. It resolves which grid to be in (a join token, the swarm
 * key already in `$VGRID_HOME`, or a new grid), detects the hardware, starts the grid node,
 * serves the exec protocol to other members and the control socket to the local CLI.
 */
import '../common/polyfill.js'
import fs from 'node:fs/promises'
import path from 'node:path'
import { setMaxListeners } from 'node:events'
import { VgridError } from '../common/errors.js'
import { createLogger } from '../common/log.js'
import {
  createGrid, loadOrCreateIdentity, loadSwarmKey, createSwarmKey, writeSwarmKey,
  decodeJoinToken, encodeJoinToken, tokenAddrs, parseMultiaddr, tcpHost, IDENTITY_FILE, SWARM_KEY_FILE, type Grid, type AgentStatus, type Resources, type Offer, type GpuUse, type PeerView, type Load
} from '../grid/index.js'
import { FifoMaker, Ledger, parseExecInput, type ExecInput } from '../exec/index.js'
import { startControlServer, assertNoLiveAgent, type ControlServer } from './control/server.js'
import type { ControlReply, ControlRequest, PolicyView } from '../protocol/control.js'
import type { FrameChannel } from '../common/channel.js'
import { computeOffer, type AgentConfig, type PolicyPatch } from './config.js'
import { looksLikePeerId } from '../common/peer-id.js'
import { resolvePeer } from '../grid/placement.js'
import { detectResources, startCpuSampler } from './hardware.js'
import { OrphanLedger } from '../exec/orphans.js'
import { signalGroup } from '../exec/process-group.js'
import { StoreLock } from '../fs-sync/store-lock.js'
import { Placer, Run, serveExecProtocol, linkCommands, newTaskId, type RunContext } from './run/index.js'
import { loadKnownPeers, saveKnownPeers } from './known-peers.js'
import { ReachWatch } from './reach-watch.js'
import { WorkspaceSync } from './workspace-sync.js'
import { EXEC_PROTOCOL, FIFO_DIR, KNOWN_PEERS_FILE, KNOWN_PEERS_SAVE_INTERVAL_MS, SHUTDOWN_KILL_GRACE_MS } from './constants.js'
import type { TaskRecord } from './tasks/types.js'
import { TaskManager } from './tasks/manager.js'
import { TASK_PROTOCOL, TASK_MAX_FRAME_BYTES, TaskQueries, serveTaskProtocol, goneSignal, type TaskLookup } from './tasks/remote.js'
import { VERSION } from '../common/version.js'
import { GuestCommands } from './guests.js'
import { Watchdog } from './watchdog.js'
import { HeldRuns } from './held.js'
import { detectIsolation, describeIsolation, memoryEnforcement, type Isolation } from './isolation.js'
import { DirPool } from './dir-pool.js'
import { openRuntimeDir, removeRuntimeDir, sweepRuntimeDirs, HOME_RUNTIME_DIR } from './runtime-dir.js'
import { CoreAllocator, GuestRuns, GUEST_HOME, clearGuestDirs, type GuestSocketFactory } from './guest-run.js'
import { descends, hostWorkspace, refusedForGuest, subTasks, type GuestScope } from './guest-control.js'
import { removeTree, type WorkspaceRef } from '../fs-sync/index.js'
import os from 'node:os'
import { OwnerPolicyControl } from './policy.js'
import { Drain, WatchedSet, type DrainCount } from './drain.js'
import { memoryFigures } from './memory.js'
import { startHttpServer, type HttpServer } from '../http/index.js'

const log = createLogger('agent')
const gridLog = createLogger('grid')

export interface Agent {
  readonly grid: Grid
  readonly resources: Resources
  readonly offer: Offer
  /** How the agent came to its grid, for the banner. */
  readonly joined: 'new' | 'token' | 'peers' | 'rejoin'
  readonly warnings: string[]
  /** How guests run here, in words (the banner's `guests` line). */
  readonly guests: string
  status (): AgentStatus
  joinToken (): string
  /** Applies the owner policy of `config` (a reload); returns it as `vgrid agent set` shows it. */
  reload (config: AgentConfig): { policy: PolicyView, warnings: string[] }
  /** Resolves, with why, when the owner asks the agent to stop (`vgrid agent stop`, or drained). */
  readonly stopRequested: Promise<string>
  stop (): Promise<void>
}

interface GridChoice { swarmKey: Uint8Array, bootstrap: string[], joined: Agent['joined'], warning?: string }

/** --join wins; then the key already here with --peer or remembered members; else a new grid. */
async function chooseGrid (config: AgentConfig): Promise<GridChoice> {
  if (config.join !== undefined) {
    const token = decodeJoinToken(config.join)
    const existing = await loadSwarmKey(config.home)
    const same = existing !== undefined && Buffer.compare(Buffer.from(existing), Buffer.from(token.swarmKey)) === 0
    if (existing !== undefined && !same) log.warn('this agent leaves its previous grid for the one of the join token')
    await writeSwarmKey(config.home, token.swarmKey)
    // The same token at every start (a service's --join-file): the members met since are
    // dialled too, so the grid is found while the token's own member is away.
    const known = same ? await loadKnownPeers(config.home) : []
    const warning = token.legacy === true
      ? 'the join token has no checksum (an older form): a typo in it cannot be detected; `vgrid join-token` on a member prints a new one'
      : undefined
    return { swarmKey: token.swarmKey, bootstrap: [...new Set([...token.addrs, ...config.peers, ...known])], joined: 'token', ...(warning !== undefined ? { warning } : {}) }
  }
  const existing = await loadSwarmKey(config.home)
  if (existing === undefined) {
    if (config.peers.length > 0) {
      throw new VgridError('ERR_BAD_ARGUMENT', `--peer needs the grid's swarm key in ${config.home}/swarm.key, and there is none`,
        'join with the token instead: on a member run `vgrid join-token`, then here `vgrid agent --join TOKEN`')
    }
    const key = createSwarmKey()
    await writeSwarmKey(config.home, key)
    return { swarmKey: key, bootstrap: [], joined: 'new' }
  }
  if (config.peers.length > 0) return { swarmKey: existing, bootstrap: config.peers, joined: 'peers' }
  return { swarmKey: existing, bootstrap: await loadKnownPeers(config.home), joined: 'rejoin' }
}

/**
 * Watches whether an agent sent to its grid (a token, --peer) reaches it; not one that starts
 * a grid or rejoins its own (its members may all be away, and nothing was mistyped).
 */
function watchReach (choice: GridChoice, grid: Grid): ReachWatch | undefined {
  if (choice.joined !== 'token' && choice.joined !== 'peers') return undefined
  // a token may name this very agent (a service given its own grid's token)
  const addrs = choice.bootstrap.filter((a) => !a.endsWith(`/p2p/${grid.peerId}`))
  if (addrs.length === 0) return undefined
  return new ReachWatch({
    addrs,
    suspect: choice.joined === 'token' ? 'wrong join token' : `wrong swarm key in ${SWARM_KEY_FILE}`,
    connected: () => grid.connectedPeers().length > 0,
    onViewChange: (cb) => grid.onViewChange(cb),
    warn: (msg) => { log.warn(msg) },
    reached: (msg) => { log.warn(msg) }
  })
}

/** Where a `run` request from the CLI goes: `--on` and the workspace, when given. */
function runWhere (req: { on?: string, workspace?: WorkspaceRef }): { on?: string, workspace?: WorkspaceRef } {
  return { ...(req.on !== undefined ? { on: req.on } : {}), ...(req.workspace !== undefined ? { workspace: req.workspace } : {}) }
}

/**
 * The CLI's inputs (stdin, signals, resize) into its run, validated. A CLI that goes away, or
 * sends what is not an input, abandons the run: its command must not outlive it. Returns the
 * input refused, if one was: the run's end is then that error.
 */
function followInputs (channel: FrameChannel, run: Run): () => Error | undefined {
  let refused: Error | undefined
  void (async () => {
    for (;;) {
      const raw = await channel.recv().catch(() => undefined)
      if (raw === undefined) { run.abandon(); return }
      let input: ExecInput
      try {
        input = parseExecInput(raw)
      } catch (err) {
        log.warn('refused an input from the command line', err)
        refused = err as Error
        run.abandon(refused)
        return
      }
      if (!await run.input(input)) return
    }
  })()
  return () => refused
}

/** A fan-out's records go as `shards`, with the first as `task` for older clients. */
function taskReply (r: TaskRecord | TaskRecord[]): { t: 'task', task: TaskRecord, shards?: TaskRecord[] } {
  return Array.isArray(r) ? { t: 'task', task: r[0]!, shards: r } : { t: 'task', task: r }
}

const USER_NAME = ((): string => {
  try {
    return os.userInfo().username
  } catch {
    return 'unknown'
  }
})()

/**
 * The offer other members see: nothing at all where guests cannot be contained (no working
 * bwrap), and how guests run here, for `vgrid peers`.
 */
function advertised (offer: Offer, iso: Isolation): Offer {
  if (iso.kind === 'unavailable') return { ...offer, cpus: 0, memBytes: 0, gpus: [], isolation: 'unavailable' }
  return { ...offer, isolation: iso.kind }
}

/** The load with the room this member's store has for a workspace, once it is known. */
function withRoom (load: Load, room: number | undefined): Load {
  return room === undefined ? load : { ...load, storeRoom: room }
}

/**
 * `agent set --accept-from`: host names and prefixes of peer ids resolved to the peer ids of
 * the members the grid shows now (ERR_NO_SUCH_PEER, ERR_AMBIGUOUS_PEER otherwise), so what is
 * applied and saved names members by the identity their connections prove. A peer id is
 * taken as given: the member may be away.
 */
export function resolveAcceptFrom (patch: PolicyPatch, view: PeerView[]): PolicyPatch {
  if (patch.acceptFrom === undefined || patch.acceptFrom === 'all') return patch
  const ids = patch.acceptFrom.map((who) => looksLikePeerId(who) ? who : resolvePeer(view, who).peer)
  return { ...patch, acceptFrom: [...new Set(ids)] }
}

/** What in the home holds secrets or other users' data: files 0600, directories 0700. */
const PRIVATE_FILES = [IDENTITY_FILE, SWARM_KEY_FILE, 'config', KNOWN_PEERS_FILE]
const PRIVATE_DIRS = ['store', 'workspaces', 'tasks', 'scratch', 'running', HOME_RUNTIME_DIR]

/**
 * `$VGRID_HOME` is 0700 and its keys 0600 at every start, also a home that existed with
 * looser modes (one made by hand, restored from a backup): mkdir's mode applies only to a new
 * directory. Returns what was tightened, for the log.
 */
export async function secureHome (home: string): Promise<string[]> {
  const fixed: string[] = []
  const tighten = async (p: string, mode: number, dir: boolean): Promise<void> => {
    const st = await fs.lstat(p).catch(() => undefined)
    if (st === undefined || st.isSymbolicLink() || st.isDirectory() !== dir) return
    if ((st.mode & 0o777) === mode) return
    await fs.chmod(p, mode)
    fixed.push(`${path.relative(home, p) || '.'} ${(st.mode & 0o777).toString(8)} -> ${mode.toString(8)}`)
  }
  await tighten(home, 0o700, true)
  for (const f of PRIVATE_FILES) await tighten(path.join(home, f), 0o600, false)
  for (const d of PRIVATE_DIRS) await tighten(path.join(home, d), 0o700, true)
  return fixed
}

export async function startAgent (config: AgentConfig): Promise<Agent> {
  await fs.mkdir(config.home, { recursive: true, mode: 0o700 })
  const tightened = await secureHome(config.home)
  if (tightened.length > 0) log.warn(`other users could read this agent's home: modes tightened (${tightened.join(', ')})`)
  // Before anything in the home is read or made: one agent per home, keys included.
  const homeLock = await StoreLock.acquireHome(config.home)
  try {
    return await startLocked(config, homeLock)
  } catch (err) {
    await homeLock.release().catch(() => {})
    throw err
  }
}

/** How long a stopping agent waits for its guests to go after the kill grace, before it kills what is left. */
const GUESTS_GONE_WAIT_MS = SHUTDOWN_KILL_GRACE_MS + 400

async function startLocked (config: AgentConfig, homeLock: StoreLock): Promise<Agent> {
  await assertNoLiveAgent(config.home)
  // No agent runs here: the groups still listed were left by one that was killed.
  const orphans = OrphanLedger.open(config.home)
  if (orphans.stopped > 0) log.warn(`stopped ${orphans.stopped} command${orphans.stopped === 1 ? '' : 's'} that the previous run of this agent left running`)
  const [choice, privateKey, resources, isolation] = await Promise.all([
    chooseGrid(config), loadOrCreateIdentity(config.home), detectResources(), detectIsolation(config.isolation, config.home)
  ])
  if (choice.warning !== undefined) log.warn(choice.warning)
  if (isolation.kind === 'none') log.warn(`--isolation none: guests ${describeIsolation(isolation)}; they can read and change everything this user can`)
  if (isolation.kind === 'unavailable') log.warn(`${describeIsolation(isolation)}; ${isolation.hint}`)
  // FIFOs and guests' homes (runtime-dir.ts): emptied of what a killed agent left.
  sweepRuntimeDirs()
  const runtime = openRuntimeDir(config.home)
  await clearGuestDirs({ disk: config.home, runtime: runtime.dir })
  // What --no-sync runs of a killed agent left.
  await removeTree(path.join(config.home, 'scratch')).catch(() => {})
  await fs.mkdir(path.join(config.home, 'scratch'), { mode: 0o700 })
  const guestsLine = isolation.kind === 'unavailable' ? `${describeIsolation(isolation)}; ${isolation.hint}` : describeIsolation(isolation)
  const memoryLine = memoryEnforcement()
  // Joined through a token or --peer: where the grid is, saved at once, so an agent stopped
  // before it saved the members it saw still finds its grid at the next start.
  if (choice.joined !== 'rejoin' && choice.bootstrap.length > 0) await saveKnownPeers(config.home, choice.bootstrap).catch((err) => { log.warn('could not save the known peers', err) })
  const { offer, warnings } = computeOffer(config.share, resources)
  if (choice.warning !== undefined) warnings.push(choice.warning)
  const ledger = new Ledger({ cpus: offer.cpus, memBytes: offer.memBytes, gpus: resources.gpus.filter((g) => offer.gpus.includes(g.index)), pools: offer.pools, labels: offer.labels })
  const gpuUse = new Map<number, GpuUse>()
  const guests = new GuestCommands((m) => { log.warn(m) })
  let publish: (() => void) | undefined
  // The chunk store opens after the grid: until then no room is advertised.
  let storeRoom: (() => number | undefined) | undefined
  // Applies --max-tasks, --nice and --only-when-idle to the ledger now, and every later change.
  let hostOf: ((peer: string) => string | undefined) | undefined
  let requestStop: (why: string) => void = () => {}
  const stopRequested = new Promise<string>((resolve) => { requestStop = resolve })
  // Set once the run context exists; until then nothing runs.
  let drain: Drain | undefined
  const policy = new OwnerPolicyControl({
    home: config.home, resources, ledger, share: config.share, policy: config.policy, guests, publish: () => { publish?.() }, hostOf: (peer) => hostOf?.(peer),
    onResume: () => { drain?.cancel() }
  })
  const cpu = startCpuSampler()
  const startedAt = Date.now()
  // Until its protocols are served, a member shows nothing free: a run placed on it at once
  // would be refused as if it ran another version (a restarted member, seen again at once).
  let ready = false
  const grid = await createGrid({
    privateKey,
    swarmKey: choice.swarmKey,
    listen: config.listen,
    bootstrap: choice.bootstrap,
    version: VERSION,
    startedAt,
    describe: () => ({ resources, offer: advertised(policy.currentOffer(), isolation), load: startingUp(ready, withRoom({ ...policy.load(ledger.snapshot(), cpu.utilisation()), gpuUse: [...gpuUse.values()] }, storeRoom?.())) }),
    onWarning: (msg) => { gridLog.warn(msg) }
  }).catch((err) => { cpu.stop(); policy.stop(); throw err })
  publish = () => { grid.publishNow() }
  hostOf = (peer) => grid.view().find((p) => p.peer === peer)?.resources.host
  const reach = watchReach(choice, grid)

  const shutdown = new AbortController()
  // Every running command listens to it: thousands may run at once.
  setMaxListeners(0, shutdown.signal)
  // The data plane listens where libp2p does (its first TCP address), on a port of its own.
  const planeHost = config.listen.map((a) => parseMultiaddr(a)).map((ma) => ma === undefined ? undefined : tcpHost(ma)).find((h) => h !== undefined)
  const sync = await WorkspaceSync.start(config.home, grid, config.cacheBytes, planeHost).catch(async (err) => { cpu.stop(); await grid.stop(); throw err })
  storeRoom = () => sync.store.room()
  await linkCommands(config.home)
  const tasks = await TaskManager.open(config.home, { peer: grid.peerId, host: resources.host })
  // The pipes of commands run here (exec/fifos.ts); where earlier builds kept them, gone.
  await fs.rm(path.join(config.home, FIFO_DIR), { recursive: true, force: true })
  const fifos = new FifoMaker(path.join(runtime.dir, FIFO_DIR))
  fifos.warm()
  let watchdog: Watchdog | undefined
  // Set once the HTTP server listens (below, after the control socket); why not, if it does not.
  let web: HttpServer | undefined
  let webOff = 'it was started with --http off'
  const ctx: RunContext = {
    home: config.home, scratch: new DirPool(path.join(config.home, 'scratch')), grid, ledger, host: resources.host, gpus: resources.gpus, fifos,
    shutdown: shutdown.signal, loadChanged: () => { grid.publishNow(); drain?.check() }, sync, children: tasks,
    groups: guests.groups(orphans.ledger),
    // So a command stopped because the owner came back ends as lost (guests.ts).
    watch: (channel) => guests.watch(channel),
    gpuUse,
    startedAt,
    // A drain waits for these: a guest's attempt ends after its outputs and exit went back.
    attempts: new WatchedSet(() => { drain?.check() }),
    guests: new GuestRuns({
      home: config.home,
      runtime: runtime.dir,
      iso: isolation,
      cores: new CoreAllocator(),
      socket: async (dir, scope, owner) => await guestSockets(dir, scope, owner),
      agentUser: USER_NAME,
      ...(process.env.VGRID_DEV_DIR !== undefined && process.env.VGRID_DEV_DIR !== '' ? { devDir: process.env.VGRID_DEV_DIR } : {})
    }),
    guestRefusal: (peer) => policy.refusal(peer),
    held: new HeldRuns(config.home, resources.host, config.keepResultsMs)
  }
  const placer = new Placer(ctx)
  const drainCount = (): DrainCount => {
    const guestsHere = ctx.attempts?.size ?? 0
    return { guests: guestsHere, others: Math.max(0, ledger.snapshot().running - guestsHere) }
  }
  drain = new Drain({ count: drainCount, drained: () => { requestStop('drained (vgrid agent stop --drain)') } })
  if (isolation.kind !== 'unavailable') {
    const wd = Watchdog.start()
    if (wd !== undefined) { ctx.watchdog = wd; watchdog = wd }
  }
  let guestSockets: GuestSocketFactory = async () => { throw new VgridError('ERR_INTERNAL', 'the agent is still starting') }
  await grid.handle(EXEC_PROTOCOL, serveExecProtocol(ctx))
  await grid.handle(TASK_PROTOCOL, serveTaskProtocol(tasks), { maxFrameBytes: TASK_MAX_FRAME_BYTES })
  ready = true
  grid.publishNow()
  const queries = new TaskQueries(grid, tasks)

  const inFlight = (): Record<string, number> => ({ ...tasks.inFlight(), syncSessions: sync.registry.size, attemptsHere: ctx.attempts?.size ?? 0 })
  const joinToken = (): string => encodeJoinToken({ swarmKey: choice.swarmKey, addrs: tokenAddrs(grid.addrs()) })
  const status = (): AgentStatus => ({
    peer: grid.peerId, host: resources.host, version: VERSION, home: config.home, addrs: grid.addrs(),
    gridSize: grid.view().length, connections: grid.connectedPeers().length, startedAt, joinToken: joinToken(),
    guests: guestsLine, memory: memoryLine, lending: policy.lending(), running: drainCount(),
    ...(web !== undefined ? { http: web.url } : {}),
    ...(reach?.warning !== undefined ? { unreachable: reach.warning } : {})
  })

  /**
   * One control request: from the owner's CLI (the home's socket), or from a guest task
   * (`scope`: its own socket, which accepts only what a task may do; guest-control.ts).
   */
  const handle = async (req: ControlRequest, channel: FrameChannel, scope?: GuestScope): Promise<void> => {
    if (scope !== undefined) {
      const refused = refusedForGuest(req)
      if (refused !== undefined) throw refused
    }
    // A guest names its sub-tasks only, by its own paths; the owner's CLI, any task from its workspace.
    const lookup = (ref: string, workspace: string | undefined): TaskLookup => {
      if (scope === undefined) return workspace !== undefined ? { ref, workspace } : { ref }
      const found = subTasks(tasks.summaries(), scope.task, ref)
      if (found.length === 0) {
        throw new VgridError('ERR_NOT_ALLOWED', `${ref} is not a sub-task of this task`, 'a task may look at and cancel only the tasks it submitted')
      }
      if (found.some((k) => k.group !== found[0]!.group)) {
        throw new VgridError('ERR_AMBIGUOUS_TASK', `${found.length} sub-tasks have ids starting with ${ref}`, 'give more digits of the id')
      }
      return { ref, ids: found.map((k) => k.id) }
    }
    switch (req.t) {
      case 'peers': await channel.send({ t: 'peers', peers: grid.view() }); break
      case 'status': {
        const s = { ...status(), usage: memoryFigures(req.settle === true && scope === undefined, process.env, inFlight) }
        // a guest sees neither the key to the grid nor the owner's own doors into the agent
        const { http: _http, ...guestView } = s
        await channel.send({ t: 'status', status: scope === undefined ? s : { ...guestView, joinToken: '', home: GUEST_HOME } })
        break
      }
      case 'join-token': await channel.send({ t: 'join-token', token: joinToken() }); break
      case 'run': {
        if (scope !== undefined) {
          req.parent = scope.task
          if (req.workspace !== undefined) req.workspace = hostWorkspace(scope, req.workspace)
        }
        const guest = scope !== undefined
        // A vrun from inside a task is its child: recorded, and waited for by the parent.
        const child = await tasks.attach(req)
        const run = new Run(child?.id ?? newTaskId())
        // A vrun from inside a task is its child: recorded from the run's events, and waited for by the parent.
        if (child !== undefined) run.on((ev) => { child.observe(ev) })
        run.on(async (ev) => { await channel.send(ev) })
        const refused = followInputs(channel, run)
        try {
          await placer.submit(run, req.spec, { ...runWhere(req), guest })
          const bad = refused()
          if (bad !== undefined) throw bad
          child?.ended()
        } catch (err) {
          child?.ended(err)
          throw refused() ?? err
        }
        break
      }
      case 'batch': {
        const b = req.batch
        if (scope !== undefined) {
          b.parent = scope.task
          b.guest = true
          if (b.workspace !== undefined) b.workspace = hostWorkspace(scope, b.workspace)
        } else {
          delete b.guest
        }
        const ids = tasks.submit(b)
        await channel.send(scope === undefined && web !== undefined ? { t: 'batched', ids, dashboard: web.url } : { t: 'batched', ids })
        break
      }
      case 'task-list': {
        const { tasks: list, unreachable } = await queries.list()
        // every record: the CLI picks what to show (recent trees, or all with --all)
        if (scope === undefined) {
          await channel.send({ t: 'task-list', tasks: list, unreachable })
        } else {
          const byId = new Map(list.map((r) => [r.id, r]))
          await channel.send({ t: 'task-list', tasks: list.filter((r) => descends(r, scope.task, byId)), unreachable: [] })
        }
        break
      }
      case 'task-show': await channel.send({ t: 'task', task: await queries.show(lookup(req.id, req.workspace)) }); break
      case 'task-cancel': await channel.send(taskReply(await queries.cancel(lookup(req.id, req.workspace)))); break
      case 'task-wait': await channel.send(taskReply(await queries.wait(lookup(req.id, req.workspace), goneSignal(channel)))); break
      case 'task-log': await channel.send({ t: 'task', task: await queries.log(lookup(req.id, req.workspace), req.follow, req.stderrOnly, channel, goneSignal(channel)) }); break
      case 'agent-set': await channel.send({ t: 'policy', ...policy.set(resolveAcceptFrom(req.patch, grid.view())) }); break
      case 'agent-stop': await stopFor(req.drain, channel); break
      case 'ui-login': {
        if (web === undefined) throw new VgridError('ERR_HTTP_OFF', `this agent serves no dashboard: ${webOff}`, 'start the agent with --http 127.0.0.1:7322 (the default), or another free port')
        await channel.send({ t: 'ui-login', url: web.loginUrl() })
        break
      }
    }
  }
  /**
   * `vgrid agent stop`: at once, or (drain) once nothing runs here, telling the CLI what it
   * waits for. The CLI leaving stops nothing and calls off nothing.
   */
  const stopFor = async (drained: boolean, channel: FrameChannel): Promise<void> => {
    const host = resources.host
    if (!drained) {
      await channel.send({ t: 'stopping', host, pid: process.pid, count: drainCount() })
      requestStop('vgrid agent stop')
      return
    }
    const d = drain
    if (d === undefined) throw new VgridError('ERR_INTERNAL', 'the agent is still starting')
    policy.drain()
    d.start()
    const gone = goneSignal(channel)
    await new Promise<void>((resolve) => {
      let done = false
      let unfollow: (() => void) | undefined
      const finish = (): void => {
        if (done) return
        done = true
        unfollow?.()
        gone.removeEventListener('abort', finish)
        resolve()
      }
      // The last message sent, the request is over; a client gone ends it too.
      const send = (msg: ControlReply, last: boolean): void => { channel.send(msg).then(() => { if (last) finish() }, finish) }
      gone.addEventListener('abort', finish, { once: true })
      unfollow = d.follow((e) => {
        if (e.t === 'count') send({ t: 'draining', host, count: e.count }, false)
        else if (e.t === 'done') send({ t: 'stopping', host, pid: process.pid, count: { guests: 0, others: 0 } }, true)
        else send({ t: 'resumed', host }, true)
      })
    })
  }
  guestSockets = async (dir, scope, owner) => await startControlServer(dir, { peer: grid.peerId, handle: async (req, channel) => { await handle(req, channel, scope) } }, owner)

  // A request on the control socket waits until the HTTP server is up (or known off), so
  // `vgrid status` right after the start already names the dashboard.
  let served!: () => void
  const serving = new Promise<void>((resolve) => { served = resolve })
  let control: ControlServer
  try {
    control = await startControlServer(config.home, { peer: grid.peerId, handle: async (req, channel) => { await serving; await handle(req, channel) } })
  } catch (err) {
    cpu.stop()
    await grid.stop()
    throw err
  }

  // The HTTP API and dashboard: the default address is served when it is free (a second
  // agent on this machine goes on without); an address asked for must be served.
  if (config.http !== undefined) {
    try {
      web = await startHttpServer({ config: config.http, home: config.home, handle: async (req, channel) => { await handle(req, channel) }, grid, tasks })
    } catch (err) {
      if (config.http.ifFree !== true || !(err instanceof VgridError) || err.code !== 'ERR_PORT_IN_USE') {
        cpu.stop()
        await control.close().catch(() => {})
        await grid.stop()
        throw err
      }
      webOff = err.message
      log.warn(`${err.message}: this agent serves no HTTP API or dashboard (--http 127.0.0.1:PORT picks another port)`)
    }
  }
  served()

  // Tasks whose commands the last run left running were started, whatever their records say.
  tasks.start(ctx, placer, orphans.tasks)

  // Remember where the other members are, to find the grid again after a restart.
  let lastSaved = ''
  const savePeers = async (): Promise<void> => {
    const addrs = grid.view().filter((p) => !p.self).flatMap((p) => p.addrs.slice(0, 4))
    const json = JSON.stringify(addrs)
    if (addrs.length === 0 || json === lastSaved) return
    lastSaved = json
    await saveKnownPeers(config.home, addrs).catch((err) => { log.warn('could not save the known peers', err) })
  }
  const saveTimer = setInterval(() => { void savePeers() }, KNOWN_PEERS_SAVE_INTERVAL_MS)
  saveTimer.unref()

  return {
    grid, resources, offer, joined: choice.joined, warnings, guests: guestsLine,
    status, joinToken, stopRequested,
    reload (config) {
      return policy.replace(config.share, config.policy)
    },
    async stop () {
      clearInterval(saveTimer)
      reach?.stop()
      await savePeers()
      shutdown.abort()
      cpu.stop()
      policy.stop()
      await web?.close().catch((err) => { log.warn('closing the HTTP server failed', err) })
      await control.close().catch((err) => { log.warn('closing the control socket failed', err) })
      // The guests got their polite signal with the shutdown, and SIGKILL after a grace; one
      // that ignores both while its session unwinds must not outlive the agent.
      const deadline = Date.now() + GUESTS_GONE_WAIT_MS
      while (guests.pgids().some((g) => signalGroup(g, 0)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
      for (const g of guests.pgids()) signalGroup(g, 'SIGKILL')
      tasks.stopped()
      watchdog?.stop()
      await tasks.flush().catch(() => {})
      await grid.stop()
      await sync.close().catch((err) => { log.warn('closing the chunk store failed', err) })
      await tasks.close().catch(() => {})
      fifos.close()
      if (runtime.inMemory) { try { removeRuntimeDir(runtime) } catch (err) { log.warn(`could not remove ${runtime.dir}`, err) } }
      await homeLock.release().catch(() => {})
    }
  }
}

/** What a member that does not serve its protocols yet advertises: nothing free. */
function startingUp (ready: boolean, load: Load): Load {
  return ready ? load : { ...load, cpusFree: 0, memFree: 0, gpusFree: [] }
}
