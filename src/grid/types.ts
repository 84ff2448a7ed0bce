/**
 * What a member tells the grid about itself (its advertisement, gossiped on
 * `vgrid/resources/1`) and what an agent knows of the others (its view). The CLI imports these
 * as types only.
 */

export interface GpuInfo {
  /** Index as `nvidia-smi` / CUDA numbers it on the machine. */
  index: number
  vendor: string
  model: string
  memoryBytes: number
  uuid?: string
}

/** The machine as detected. */
export interface Resources {
  host: string
  os: { platform: string, distro: string, release: string, arch: string }
  cpu: { model: string, cores: number }
  memBytes: number
  gpus: GpuInfo[]
}

/** What the owner lends to the grid (after `--cpus`, `--gpus`, `--mem`, `--pool`, `--label`). */
export interface Offer {
  cpus: number
  memBytes: number
  /** Indexes of the GPUs lent (a subset of Resources.gpus). */
  gpus: number[]
  pools: string[]
  labels: Record<string, string>
  /** `--max-tasks`: commands it runs at once at most; absent = no limit. */
  maxTasks?: number
  /** `--only-when-idle`: it lends only while its owner's own load is low. */
  onlyWhenIdle?: boolean
  /** How guests run there: in a sandbox, unconfined (`--isolation none`), or not at all (no working bwrap). */
  isolation?: 'sandbox' | 'none' | 'unavailable'
  /**
   * `--accept-from`: the peer ids of the only members whose commands it runs; absent = every
   * member. Advertised so that placement skips a member that would refuse (acceptsFrom); the
   * member itself enforces it on every exec request.
   */
  acceptFrom?: string[]
}

/** Current use of what is lent. */
export interface Load {
  cpusFree: number
  memFree: number
  /** Indexes of lent GPUs not assigned to a task. */
  gpusFree: number[]
  running: number
  queued: number
  /** The machine's CPU utilisation, 0–100, all processes counted. */
  cpuUtil: number
  /**
   * Set while an `--only-when-idle` member's owner is busy: it takes no work (and shows
   * nothing free) until the owner is idle again.
   */
  ownerBusy?: boolean
  /** Its owner paused it (`vgrid agent set --pause`): it takes no new command, running ones go on. */
  paused?: boolean
  /** Its owner is stopping it (`vgrid agent stop --drain`): it takes no new command and leaves once its running ones have ended. */
  draining?: boolean
  /** Who holds each busy GPU (what `vgrid peers` shows, like gpustat for the whole grid). */
  gpuUse?: GpuUse[]
  /**
   * Bytes of a workspace this member could take in now: its chunk store's disk, what the
   * store holds counted as free, less a margin. Placement skips it for a synced workspace
   * larger than this (hasRoomFor). Absent from members before 2026-12, and before the disk
   * was read: then assumed large enough.
   */
  storeRoom?: number
}

export interface GpuUse {
  index: number
  /** The task id of the command holding it. */
  task: string
  /** For whom: `user@host` of the member that submitted it. */
  who: string
}

export interface PeerAd {
  v: 1
  peer: string
  /** Increases with every advertisement of one agent run; a lower one is stale. */
  seq: number
  /** When this agent run started (ms since epoch); with seq, orders ads across restarts. */
  startedAt: number
  addrs: string[]
  version: string
  resources: Resources
  offer: Offer
  load: Load
  /** Set on the goodbye an agent publishes when it stops. */
  leaving?: boolean
  /**
   * How often (ms) this agent re-publishes when nothing changed: it grows with the grid
   * (advertIntervalMs), and a member is expired only after several such intervals of
   * silence. Absent from agents before 2026-12: they publish every second.
   */
  every?: number
}

/** One member as an agent sees it. */
export interface PeerView extends PeerAd {
  /** Milliseconds since this agent last heard from the member. */
  lastSeenMs: number
  self: boolean
}

/** A member that left the view, as an agent remembers it (MemberView.departed). */
export interface DepartedMember {
  peer: string
  host: string
  /** Milliseconds since it left the view. */
  leftMsAgo: number
}

/** `vgrid status`. */
export interface AgentStatus {
  peer: string
  host: string
  version: string
  home: string
  addrs: string[]
  gridSize: number
  /** Members this agent holds a direct connection to. */
  connections: number
  startedAt: number
  joinToken: string
  /** How guests run here (a sandbox, unconfined, or not at all), in words. */
  guests?: string
  /** Whether it takes new commands: absent from agents before pause and drain. */
  lending?: 'yes' | 'paused' | 'draining'
  /** Commands running here now (the guests among them: commands other members sent). */
  running?: { guests: number, others: number }
  /** Whether guests' memory is held to what they reserved, and if not why. */
  memory?: string
  /** Set while an agent sent to a grid (a join token, --peer) has reached none of its members (agent/reach-watch.ts). */
  unreachable?: string
  /** Where it serves its HTTP API and dashboard (`http://127.0.0.1:7322`); absent when it does not. */
  http?: string
  /** What the agent process itself holds in memory (agent/memory.ts). */
  usage?: { rssBytes: number, heapUsedBytes: number, heapTotalBytes: number, externalBytes: number, arrayBuffersBytes: number, settled: boolean, inFlight?: Record<string, number> }
}
