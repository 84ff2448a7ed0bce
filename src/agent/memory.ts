/**
 * What the agent process holds in memory, for `vgrid status` and the soak benchmark
 * (bench/soak.ts), which must compare the agent's size after 1,000 and after 20,000 tasks.
 * RSS alone is a poor measure of growth: it includes garbage not yet collected, and how
 * much of it there is depends on when the last collection ran. So a status request may ask
 * for a full collection first; that is honoured only where the agent was started with
 * VGRID_DEBUG_GC=1, since a full collection stops the agent for tens of milliseconds.
 */
import v8 from 'node:v8'
import vm from 'node:vm'

/** Set to 1 to let a status request force a full garbage collection (`settle`). */
export const DEBUG_GC_ENV = 'VGRID_DEBUG_GC'

export interface MemoryFigures {
  rssBytes: number
  heapUsedBytes: number
  heapTotalBytes: number
  externalBytes: number
  arrayBuffersBytes: number
  /** Measured right after a full garbage collection. */
  settled: boolean
  /**
   * With `settle`: the sizes of the tables the agent keeps for work in progress (tasks
   * waiting or being placed, workspace sessions on offer, attempts running here), each 0
   * once the agent is idle; one that is not has kept something it should have let go.
   */
  inFlight?: Record<string, number>
}

let exposed: (() => void) | undefined

/** The collector, only where DEBUG_GC_ENV allows it; exposed at the first need. */
function collector (env: NodeJS.ProcessEnv): (() => void) | undefined {
  if (env[DEBUG_GC_ENV] !== '1') return undefined
  if (exposed !== undefined) return exposed
  const g = (globalThis as { gc?: unknown }).gc
  if (typeof g === 'function') return (exposed = g as () => void)
  // Without --expose-gc on the command line: the flag applies to contexts made after it is set.
  v8.setFlagsFromString('--expose-gc')
  const fromContext = vm.runInNewContext('gc') as unknown
  if (typeof fromContext === 'function') exposed = fromContext as () => void
  return exposed
}

/** The process's memory now; with `settle` (and DEBUG_GC_ENV), after a full collection. */
export function memoryFigures (settle: boolean, env: NodeJS.ProcessEnv = process.env, inFlight?: () => Record<string, number>): MemoryFigures {
  const gc = settle ? collector(env) : undefined
  // twice: the first may leave what weak references and finalizers release to the second
  if (gc !== undefined) { gc(); gc() }
  const m = process.memoryUsage()
  const figures: MemoryFigures = { rssBytes: m.rss, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external, arrayBuffersBytes: m.arrayBuffers, settled: gc !== undefined }
  if (settle && inFlight !== undefined) figures.inFlight = inFlight()
  return figures
}
