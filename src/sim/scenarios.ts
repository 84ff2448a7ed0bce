/** The grid of runs `npm run sim` makes: every placer at every load, on one workload per load. */
import type { RunSummary } from './metrics.js'
import { PLACERS, simulate, type PlacerKind, type SimulateOptions } from './simulate.js'
import { makeWorkload } from './workload.js'

export interface ScenarioInit {
  agents: number
  jobs: number
  seed: number
  /** Offered loads, 0–1. */
  loads: number[]
  placers?: readonly PlacerKind[]
  options?: SimulateOptions
}

/** Runs them in order; `onRun` hears of each as it finishes (for progress). */
export function runScenarios (init: ScenarioInit, onRun?: (r: RunSummary) => void): RunSummary[] {
  const out: RunSummary[] = []
  for (const load of init.loads) {
    const workload = makeWorkload({ agents: init.agents, jobs: init.jobs, load, seed: init.seed })
    for (const placer of init.placers ?? PLACERS) {
      const { summary } = simulate(workload, placer, { seed: init.seed, ...init.options })
      out.push(summary)
      onRun?.(summary)
    }
  }
  return out
}
