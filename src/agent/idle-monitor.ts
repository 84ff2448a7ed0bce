/**
 * `--only-when-idle`: decides from the owner's load (owner-load.ts) whether the owner is using
 * the machine. The rule, with hysteresis so a lull in the owner's work does not bring guests
 * straight back:
 *
 * - the owner's load is averaged over the last OWNER_LOAD_WINDOW_MS (10 s), sampled every
 *   OWNER_LOAD_SAMPLE_MS (1 s);
 * - the owner is **busy** as soon as that average reaches OWNER_BUSY_PERCENT (25 % of all
 *   cores): the machine lends nothing and the guests running are stopped;
 * - the owner is **idle** again once the average has stayed below it for OWNER_IDLE_AFTER_MS
 *   (60 s). At start the machine lends once its first full window is below the threshold.
 *
 * Test hook: VGRID_OWNER_LOAD_TIMING="SAMPLE_MS,WINDOW_MS,IDLE_AFTER_MS" replaces the three
 * timings (with VGRID_OWNER_LOAD_FILE, see owner-load.ts, a test plays the owner in a second).
 */
import type { OwnerLoadSource } from './owner-load.js'
import { VgridError } from '../common/errors.js'

export const OWNER_LOAD_SAMPLE_MS = 1_000
export const OWNER_LOAD_WINDOW_MS = 10_000
export const OWNER_BUSY_PERCENT = 25
export const OWNER_IDLE_AFTER_MS = 60_000
export const OWNER_LOAD_TIMING_ENV = 'VGRID_OWNER_LOAD_TIMING'

export interface IdleRule {
  sampleMs: number
  windowMs: number
  busyPercent: number
  idleAfterMs: number
}

export const DEFAULT_IDLE_RULE: IdleRule = {
  sampleMs: OWNER_LOAD_SAMPLE_MS,
  windowMs: OWNER_LOAD_WINDOW_MS,
  busyPercent: OWNER_BUSY_PERCENT,
  idleAfterMs: OWNER_IDLE_AFTER_MS
}

/** The rule, with the test hook's timings when its variable is set (a bad value is an error). */
export function idleRule (env: NodeJS.ProcessEnv = process.env): IdleRule {
  const v = env[OWNER_LOAD_TIMING_ENV]
  if (v === undefined || v === '') return DEFAULT_IDLE_RULE
  const ms = v.split(',').map((x) => Number(x.trim()))
  if (ms.length !== 3 || ms.some((n) => !Number.isInteger(n) || n < 10 || n > 3_600_000)) {
    throw new VgridError('ERR_BAD_ARGUMENT', `${OWNER_LOAD_TIMING_ENV}=${v}: expected SAMPLE_MS,WINDOW_MS,IDLE_AFTER_MS, whole milliseconds from 10`)
  }
  const [sampleMs, windowMs, idleAfterMs] = ms as [number, number, number]
  return { ...DEFAULT_IDLE_RULE, sampleMs, windowMs, idleAfterMs }
}

export type OwnerState = 'starting' | 'busy' | 'idle'

/** The rule as a pure state machine: feed it samples, it says whether the owner is busy. */
export class OwnerActivity {
  /** `starting` until the first full window (or a busy one) decides; the machine lends only when `idle`. */
  state: OwnerState = 'starting'
  /** The latest window's average, % of all cores. */
  load: number | undefined
  private readonly samples: Array<{ at: number, pct: number }> = []
  private quietSince: number | undefined
  private firstAt: number | undefined

  constructor (private readonly rule: IdleRule) {}

  /** One sample taken at `now` (ms); returns true when `state` changed. */
  feed (now: number, pct: number): boolean {
    this.firstAt ??= now
    this.samples.push({ at: now, pct })
    while (this.samples.length > 1 && this.samples[0]!.at <= now - this.rule.windowMs) this.samples.shift()
    const avg = this.samples.reduce((s, x) => s + x.pct, 0) / this.samples.length
    this.load = avg
    const was = this.state
    if (avg >= this.rule.busyPercent) {
      this.quietSince = undefined
      this.state = 'busy'
    } else {
      this.quietSince ??= now
      if (this.state === 'starting') {
        if (now - this.firstAt + this.rule.sampleMs >= this.rule.windowMs) this.state = 'idle'
      } else if (this.state === 'busy' && now - this.quietSince >= this.rule.idleAfterMs) {
        this.state = 'idle'
      }
    }
    return this.state !== was
  }
}

/**
 * Samples `source` on the rule's interval and calls `onChange(state)` on every change of the
 * owner's state. Stops with `stop()`.
 */
export function startIdleMonitor (source: OwnerLoadSource, rule: IdleRule, onChange: (state: OwnerState, load: number | undefined) => void): { activity: OwnerActivity, stop: () => void } {
  const activity = new OwnerActivity(rule)
  let sampling = false
  let stopped = false
  const tick = (): void => {
    if (sampling) return
    sampling = true
    source.sample().then((pct) => {
      if (!stopped && pct !== undefined && activity.feed(Date.now(), pct)) onChange(activity.state, activity.load)
    }, () => {}).finally(() => { sampling = false })
  }
  const timer = setInterval(tick, rule.sampleMs)
  timer.unref()
  tick()
  return { activity, stop: () => { stopped = true; clearInterval(timer) } }
}
