/**
 * The numbers of the simulated world, each with its unit. Timings of vgrid itself (advert
 * interval, publish gap, view expiry, claim fan-out) are imported from the real modules; what is
 * here describes the network, the workload and the churn around it.
 */

/** One-way delay of a claim, reply, start or release message between two agents (LAN). */
export const NET_MIN_DELAY_MS = 0.5
export const NET_MAX_DELAY_MS = 3
/** Gossip: an advertisement reaches each member after this delay (mesh hops), or is lost. */
export const GOSSIP_MIN_DELAY_MS = 5
export const GOSSIP_MAX_DELAY_MS = 150
export const GOSSIP_LOSS = 0.05
/** A claim sent to a member that has gone (no reply) counts as refused after this long. */
export const CLAIM_TIMEOUT_MS = 2_000
/** Random placement: after a refusal, the job is tried again (on a new random member) this much later. */
export const RANDOM_RETRY_MS = 500
/** The share of the fleet that joins and leaves (desktops), and how long they stay up and away. */
export const CHURN_FRACTION = 0.1
export const CHURN_MEAN_UP_MS = 10 * 60_000
export const CHURN_MEAN_DOWN_MS = 3 * 60_000
/** Jobs submitted in this first share of the arrival window warm the grid up and are not measured. */
export const WARMUP_FRACTION = 0.3
/** How far back a view looks for a delivered advertisement before calling the member unknown. */
export const VIEW_LOOKBACK_ADVERTS = 64
