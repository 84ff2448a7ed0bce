/**
 * sim: a discrete-event simulator of vgrid's placement without a centre (DESIGN §2), driven by
 * the real pure code (src/grid/placement.ts: fitsNow, fitsEver, chooseClaimTargets,
 * CLAIM_FANOUT) and real executor ledgers (src/exec/ledger.ts). It puts the same workload (a
 * fleet of mixed machines, a seeded stream of jobs of mixed shapes and durations, desktops
 * leaving and coming back) through three placers: vgrid's (each submitter's gossip view,
 * delayed and lossy, weighted claims on two members), an omniscient central placer (true state,
 * no delay, global FIFO with greedy best-fit backfill), and random placement. `npm run sim`
 * (bench/sim.ts) runs it at several loads and writes bench/results/sim.json and sim.svg.
 *
 * What the model leaves out, on purpose: memory, pools and labels (no job asks for them);
 * submitters leaving (only executors churn: a submitter's queue lives and dies with it);
 * claim leases (no submitter dies); the network's bandwidth and the cost of syncing a workspace
 * (a start is one message). Everything here is pure and seeded: the same inputs give the same
 * figures, to the event.
 */
export { makeWorkload, makeFleet, type Workload, type WorkloadInit, type AgentSpec, type JobSpec, type ChurnEvent } from './workload.js'
export { simulate, PLACERS, type PlacerKind, type SimulateOptions, type RunResult } from './simulate.js'
export { runScenarios, type ScenarioInit } from './scenarios.js'
export type { RunSummary } from './metrics.js'
export type { Job } from './world.js'
export { plotSvg } from './plot.js'
export * from './constants.js'
