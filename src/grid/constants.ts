/**
 * Wire ids, timings and limits of the grid, in one place. Every number carries its unit.
 */

/** Gossipsub topic of resource advertisements; bump the suffix on an incompatible change. */
export const ADVERT_TOPIC = 'vgrid/resources/1'
/** Members greet each other with their advertisement as soon as they connect (hello.ts). */
export const HELLO_PROTOCOL = '/vgrid/hello/1.0.0'
export const HELLO_TIMEOUT_MS = 5_000
/** A hello lists at most this many other members, and each of its frames is at most this large. */
export const MAX_HELLO_MEMBERS = 1024
export const HELLO_MAX_FRAME_BYTES = 512 * 1024
/** Our private Kademlia DHT: a protocol id of our own keeps us off the public IPFS DHT. */
export const DHT_PROTOCOL = '/vgrid/kad/1.0.0'
/** Concurrent ping streams per connection, each way (node.ts says why not libp2p's 1 and 2). */
export const PING_MAX_STREAMS = 8
/**
 * The connection monitor's ping (every 10 s) gives up on a connection after at least this
 * long (node.ts): twice libp2p's 5 s, which cut the connections of agents that were only slow.
 */
export const PING_MIN_TIMEOUT_MS = 10_000

/**
 * How often an agent re-publishes its advertisement when nothing changed: every second in a
 * small grid, and ADVERT_MS_PER_MEMBER for each member in a larger one, up to the cap. So a
 * member receives about 1000 / ADVERT_MS_PER_MEMBER refreshes a second whatever the size of
 * the grid: each costs every member a decryption, a signature check and a decode, and at one
 * a second, fifty members cost each agent ~8 % of a core doing nothing (issue 14, measured).
 * A change of load (a command starting or ending) is published at once all the same, and a
 * member whose connection closes leaves the view at once: the refresh only proves that a
 * member still speaks.
 */
export const ADVERT_INTERVAL_MS = 1000
export const ADVERT_MS_PER_MEMBER = 250
export const MAX_ADVERT_INTERVAL_MS = 15_000

export function advertIntervalMs (members: number): number {
  return Math.min(MAX_ADVERT_INTERVAL_MS, Math.max(ADVERT_INTERVAL_MS, Math.round(members * ADVERT_MS_PER_MEMBER)))
}
/** publishNow() calls closer together than this are coalesced into one publish. */
export const MIN_PUBLISH_GAP_MS = 100
/**
 * A load change is published this long after it happens, not at once: a claim's publish
 * (build, sign, send, and every member's check of the signature) then runs after the command
 * has started instead of between the claim and the start, and the claim and release of a short
 * command go out as one advertisement. The submitter learns both first-hand (load-notes.ts).
 */
export const LOAD_SETTLE_MS = 50
/**
 * How long this agent's own addresses are reused between advertisements: libp2p lists them
 * afresh from the network interfaces on every call (~0.5 ms), and a change of its own
 * addresses (`self:peer:update`) drops them at once.
 */
export const OWN_ADDRS_TTL_MS = 5_000
/**
 * A member not heard from for this long leaves the view (DESIGN §2: gone within 15 s, with a
 * margin for a loaded machine's sweep), or for EXPIRY_INTERVALS of its own refresh intervals
 * when that is longer (a grid of over 14 members). There, a frozen member's connection is
 * cut by the ping first (PING_MIN_TIMEOUT_MS after the ping that found it frozen).
 */
export const VIEW_EXPIRY_MS = 12_000
export const EXPIRY_INTERVALS = 3

/** The largest refresh interval an advertisement may state (it is clamped to MAX_ADVERT_INTERVAL_MS). */
export const MAX_STATED_INTERVAL_MS = 3_600_000

/** The refresh interval a member states, within what this version believes. */
export function statedIntervalMs (every: number | undefined): number {
  return Math.min(MAX_ADVERT_INTERVAL_MS, Math.max(ADVERT_INTERVAL_MS, every ?? ADVERT_INTERVAL_MS))
}

/** How long a member that refreshes every `every` ms may stay silent before it expires. */
export function memberExpiryMs (every: number | undefined, floorMs = VIEW_EXPIRY_MS): number {
  return Math.max(floorMs, EXPIRY_INTERVALS * statedIntervalMs(every) + ADVERT_INTERVAL_MS)
}
/** A member silent for this many of its refresh intervals is a warning in the log. */
export const SILENCE_WARN_INTERVALS = 2
/** How often the view is swept for expired members. */
export const VIEW_SWEEP_INTERVAL_MS = 1000
/**
 * After a member leaves the view we remember its last (startedAt, seq) this long, so a stale
 * copy of an older advertisement still travelling through the mesh cannot bring it back.
 */
export const TOMBSTONE_TTL_MS = 60_000
export const MAX_TOMBSTONES = 4096

/**
 * How long an agent remembers a member that left (its peer id and host name), so that a run
 * pinned to it (`--on`) waits for it to come back instead of failing as a typo would. A day
 * covers a machine switched off overnight or rebooted for updates; a member gone longer is
 * named as unknown again. At most MAX_DEPARTED_MEMBERS are kept, the oldest forgotten first.
 */
export const DEPARTED_MEMORY_MS = 24 * 60 * 60_000
export const MAX_DEPARTED_MEMBERS = 4096
/** For this long after its start, an agent that knows no other member yet publishes when a neighbour subscribes (membership.ts). */
export const NEW_MEMBER_MS = 30_000
/** stop() waits at most this long for the goodbye advertisement to be sent. */
export const LEAVE_FLUSH_MS = 300

/** An advertisement larger than this is refused unread (and ours is not sent). */
export const MAX_ADVERT_BYTES = 64 * 1024
/** Advertisement field limits: generous for real machines, small enough to bound memory. */
export const MAX_AD_ADDRS = 32
export const MAX_ADDR_CHARS = 512
/** Cores, GPUs, pools and labels: the limits every part shares (common/resources.ts). */
export { MAX_CPUS, MAX_GPUS, MAX_GPU_INDEX, MAX_POOLS, MAX_LABELS } from '../common/resources.js'
export const MAX_NAME_CHARS = 256
export const MAX_TASK_COUNT = 1_000_000

/** Peer exchange: how many of an advertisement's addresses we try, and how soon we retry. */
export const MAX_DIAL_ADDRS = 16
export const PEER_DIAL_TIMEOUT_MS = 5_000
export const PEER_DIAL_RETRY_MS = 5_000
/**
 * Of two members that hear of each other, the one with the larger peer id waits this long for
 * the other's dial before dialling itself: long enough for a connection to be set up on a
 * loaded machine, short enough that a member the other cannot reach is still joined soon.
 */
export const PEER_DIAL_DEFER_MS = 2_000
/**
 * A second connection to a member is closed this long after it opened (both sides' upgrades
 * and identify done), and every so often a sweep closes those that carried a stream of ours
 * at the time (connectivity.ts).
 */
export const DUPLICATE_SETTLE_MS = 1_000
export const DUPLICATE_SWEEP_MS = 10_000
/** How long closing a duplicate may wait for its streams to end before it is aborted. */
export const DUPLICATE_CLOSE_MS = 2_000

/** Bootstrap dials back off from the first delay, doubling up to the cap, until connected. */
export const BOOTSTRAP_FIRST_DELAY_MS = 250
export const BOOTSTRAP_MAX_DELAY_MS = 5_000
export const BOOTSTRAP_DIAL_TIMEOUT_MS = 5_000

/** Opening a stream (dial + protocol negotiation) gives up after this long. */
export const OPEN_TIMEOUT_MS = 10_000
/**
 * Concurrent streams per protocol per connection: libp2p's default (32 in / 64 out) would
 * reset the 33rd concurrent command between two agents.
 */
export const MAX_PROTOCOL_STREAMS = 256

/** One send() to a libp2p stream is at most this large: a bigger one is written in parts. */
export const MAX_WRITE_BYTES = 1024 * 1024
/**
 * A channel pauses its stream once this many decoded messages or bytes wait unread; the
 * muxer then stops granting send window, which is what pushes back on a fast sender.
 */
export const RECV_HIGH_WATER_MESSAGES = 64
export const RECV_HIGH_WATER_BYTES = 4 * 1024 * 1024
/**
 * Yamux stream window cap. A paused stream can still receive one window of data, so the read
 * buffer limit must exceed it; 4 MiB still fills a LAN link (window / RTT ≫ 1 GB/s).
 */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024
/**
 * Yamux data frames carry at most this much, so that a full frame and its 12-byte header fit
 * one noise message (65,535 bytes less a 16-byte tag). yamux's default, 64 KiB, made every
 * full frame two noise messages, one of them 29 bytes: a cipher setup, a tag and a write for
 * almost nothing, on both sides.
 */
export const YAMUX_MAX_MESSAGE_BYTES = 65535 - 16 - 12
export const STREAM_READ_BUFFER_BYTES = 3 * STREAM_WINDOW_BYTES

/**
 * Join tokens: `vgrid2.` + base64url(CBOR { k, a }) + a checksum of all that text (CRC-32,
 * 6 base64url characters). `vgrid1.` tokens, from before the checksum, have none.
 */
export const JOIN_TOKEN_PREFIX = 'vgrid2.'
export const LEGACY_JOIN_TOKEN_PREFIX = 'vgrid1.'
/** base64url of the 4 bytes of a CRC-32. */
export const TOKEN_CHECKSUM_CHARS = 6
export const MAX_TOKEN_CHARS = 4096
export const MAX_TOKEN_ADDRS = 16
/** How many of our addresses go into a token we print. */
export const TOKEN_ADDRS = 8

export const IDENTITY_FILE = 'identity.key'
export const SWARM_KEY_FILE = 'swarm.key'
