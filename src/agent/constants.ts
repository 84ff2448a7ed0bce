/** Protocol ids and limits of the agent's own peer protocols. */

export { EXEC_PROTOCOL, EXEC_PROTOCOL_VERSION } from '../protocol/exec.js'
/** An executor holds a claimed reservation this long at most, waiting for go or release. */
export const CLAIM_LEASE_MS = 10_000
/** A member must answer a claim (hold or refuse) within this time. */
export const CLAIM_REPLY_TIMEOUT_MS = 10_000
/** A peer that opened an exec stream must send its request within this time. */
export const EXEC_REQUEST_TIMEOUT_MS = 10_000
/** How many members a run tries before it gives up (each may refuse: its view was stale). */
export const MAX_PLACEMENT_ATTEMPTS = 4
/** A queued run is placed again at every change of the view, and at the latest after this. */
export const QUEUE_RETRY_MS = 1_000
/** When the agent stops, running commands get this long between SIGTERM and SIGKILL. */
export const SHUTDOWN_KILL_GRACE_MS = 800
/** The agent exits at the latest this long after SIGINT/SIGTERM, whatever is still busy. */
export const SHUTDOWN_DEADLINE_MS = 1_800
/** Addresses of members are saved this often at most, to rejoin after a restart. */
export const KNOWN_PEERS_SAVE_INTERVAL_MS = 5_000
export const KNOWN_PEERS_FILE = 'peers.json'

/** Under the home: the FIFOs that become the stdio pipes of commands run here (exec/fifos.ts). */
export const FIFO_DIR = 'fifos'
export const MAX_KNOWN_PEERS = 64

/** An agent given a join token or --peer that reaches no member in this long says so (reach-watch.ts). */
export const REACH_TIMEOUT_MS = 10_000
