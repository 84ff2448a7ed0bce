/**
 * Gossipsub's settings for a private grid, each with why.
 *
 * @libp2p/gossipsub's defaults are made for the public Ethereum and IPFS networks, where any
 * machine may join and an attacker can bring thousands of identities (Sybils). Its peer score
 * defends the mesh there: it punishes peers that crowd one IP address or misbehave in mesh
 * upkeep, and a peer whose score falls under the graylist threshold (−80) has everything it
 * sends ignored. In a vgrid grid every member holds the swarm key (a machine without it cannot
 * even finish a connection) and every advertisement is signed by its subject and checked by
 * our topic validator, so those defences buy nothing here, while each of them can silently
 * remove an honest member from every view:
 *
 * - IP colocation (P6): sixteen agents on one host, or a lab behind one NAT address, scored
 *   each other (16 − 10)² × −5 = −180 and were graylisted: every view fell to its own agent
 *   ~50 s after the grid formed, for good (issue 14, measured).
 * - Behaviour penalty (P7): a GRAFT during a PRUNE backoff or an IWANT left unanswered counts
 *   one; squared with weight −10, three in a few seconds graylist a peer. Fifteen members
 *   joining at once overfill the mesh (Dhi), get pruned with a backoff and GRAFT again: honest
 *   races, not attacks.
 * - Topic scores (P1–P4) are off already (no topic parameters): a malformed or forged
 *   advertisement is refused by the validator and never forwarded.
 *
 * So every weight is 0, and a member's score is always 0: no honest member can be graylisted.
 * Membership.ts still watches the scores and warns in the log should one ever go negative.
 * A member that misbehaves is removed from a grid the way one gets in: by its key (start a new
 * grid with a new swarm key).
 *
 * The other defaults, reviewed the same way and kept:
 * - Flood publishing (on): the author sends each advertisement straight to every member it
 *   is connected to, and every member is connected to every other (connectivity.ts), so an
 *   advertisement arrives in one hop whatever the mesh looks like; the mesh is the fallback.
 * - Mesh sizes (D 6, Dlo 4, Dhi 12) and the 1 s heartbeat: on a 16-member grid, D 1, 3 or 6
 *   and flood publishing off all cost the same CPU within the noise (measured in one process:
 *   0.33–0.40 s of CPU a second for all 16). What costs is the number of advertisements, so
 *   membership.ts publishes less often as the grid grows (advertIntervalMs) instead.
 * - PRUNE backoff (60 s) and GRAFT flood threshold: harmless once GRAFT races no longer count
 *   as penalties.
 */
import type { GossipsubOpts } from '@libp2p/gossipsub'

export const PRIVATE_GRID_SCORE_PARAMS: GossipsubOpts['scoreParams'] = {
  IPColocationFactorWeight: 0,
  behaviourPenaltyWeight: 0,
  appSpecificWeight: 0
}

/**
 * The thresholds stay gossipsub's (gossip −10, publish −50, graylist −80): with every weight 0
 * they are never reached, and the watchdog compares scores against the same graylist value.
 */
export const GRAYLIST_THRESHOLD = -80
export const PRIVATE_GRID_SCORE_THRESHOLDS: GossipsubOpts['scoreThresholds'] = {
  graylistThreshold: GRAYLIST_THRESHOLD
}
