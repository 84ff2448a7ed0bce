/**
 * Whether an agent told where its grid is (a join token, --peer) reached any member of it. A
 * token of another grid (its key fails the handshake, before any protocol runs) and an address
 * nobody answers at look the same from here, and both left the agent alone without a word.
 * After REACH_TIMEOUT_MS without a connection the agent says so, on stderr and in
 * `vgrid status`, until a member is reached.
 */
import { REACH_TIMEOUT_MS } from './constants.js'

export interface ReachWatchInit {
  /** Where the members were said to be. */
  addrs: string[]
  /** Why they may not answer, in the user's terms (the token, or the swarm key in the home). */
  suspect: string
  /** Whether this agent holds a connection to any member. */
  connected: () => boolean
  onViewChange: (cb: () => void) => () => void
  warn: (msg: string) => void
  /** Told once a member is reached after the warning. */
  reached: (msg: string) => void
  timeoutMs?: number
}

/** At most this many addresses in the message; the rest are counted. */
const SHOWN_ADDRS = 2

export class ReachWatch {
  private problem: string | undefined
  private readonly timer: ReturnType<typeof setTimeout>
  private readonly unsubscribe: () => void

  constructor (private readonly init: ReachWatchInit) {
    const ms = init.timeoutMs ?? REACH_TIMEOUT_MS
    this.timer = setTimeout(() => { this.check(ms) }, ms)
    this.timer.unref()
    this.unsubscribe = init.onViewChange(() => { this.clearIfReached() })
  }

  /** The warning while no member has been reached, else undefined. */
  get warning (): string | undefined {
    this.clearIfReached()
    return this.problem
  }

  stop (): void {
    clearTimeout(this.timer)
    this.unsubscribe()
  }

  private check (ms: number): void {
    if (this.init.connected()) { this.unsubscribe(); return }
    const a = this.init.addrs
    const where = a.slice(0, SHOWN_ADDRS).join(', ') + (a.length > SHOWN_ADDRS ? ` and ${a.length - SHOWN_ADDRS} more` : '')
    this.problem = `could not reach any member of the grid at ${where} within ${ms / 1000} s (${this.init.suspect}, or the address is unreachable)`
    this.init.warn(this.problem)
  }

  private clearIfReached (): void {
    if (this.problem === undefined || !this.init.connected()) return
    this.problem = undefined
    this.unsubscribe()
    this.init.reached('reached a member of the grid')
  }
}
