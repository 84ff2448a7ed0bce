/**
 * The owner policy of a running agent: what it lends (`--cpus`, `--gpus`, `--mem`), how many
 * commands at once (`--max-tasks`), at what niceness (`--nice`), and whether only while the
 * owner is away (`--only-when-idle`), and from which members (`--accept-from`), or nothing new
 * at all (`--pause`, and while `vgrid agent stop --drain` waits). It keeps the ledger, the niceness of new commands and
 * the advertisement in step with the policy, applies `vgrid agent set` without a restart
 * (saving it in the config file) and a reload of the configuration (SIGHUP), and stops the
 * guests when the owner comes back.
 */
import { createLogger } from '../common/log.js'
import type { Ledger, LedgerSnapshot } from '../exec/index.js'
import { setDefaultNiceness } from '../exec/niceness.js'
import type { Load, Offer, Resources } from '../grid/index.js'
import { applyPolicyPatch, computeOffer, savePolicyPatch, type OwnerPolicy, type PolicyPatch, type ShareConfig } from './config.js'
import type { PolicyView } from '../protocol/control.js'
import type { GuestCommands } from './guests.js'
import { idleRule, startIdleMonitor, type OwnerActivity, type OwnerState } from './idle-monitor.js'
import { ownerLoadSource } from './owner-load.js'

const log = createLogger('policy')

/** When the owner comes back, guests get SIGTERM, then SIGKILL after this long. */
export const OWNER_RETURN_KILL_GRACE_MS = 5_000
const CLOSED_REASON = 'its owner is using it (--only-when-idle)'
const PAUSED_REASON = 'its owner paused it (vgrid agent set --pause)'
const DRAINING_REASON = 'its owner is stopping it once its running commands end (vgrid agent stop --drain)'

export interface PolicyInit {
  home: string
  resources: Resources
  ledger: Ledger
  share: ShareConfig
  policy: OwnerPolicy
  guests: GuestCommands
  /** The load changed: advertise now. */
  publish: () => void
  /** A member's host name as the grid shows it now, for the policy's view. */
  hostOf?: (peer: string) => string | undefined
  /** `--resume` called off a drain. */
  onResume?: () => void
  env?: NodeJS.ProcessEnv
}

export class OwnerPolicyControl {
  private share: ShareConfig
  private policy: OwnerPolicy
  private offer!: Offer
  private warnings: string[] = []
  private monitor: { activity: OwnerActivity, stop: () => void } | undefined
  /** `vgrid agent stop --drain` in progress: not saved, a restarted agent lends as its policy says. */
  private draining = false

  constructor (private readonly init: PolicyInit) {
    this.share = init.share
    this.policy = init.policy
    this.apply()
  }

  /** What this machine lends, as advertised. */
  currentOffer (): Offer {
    return this.offer
  }

  /** Warnings of the last change (a share clamped to the machine). */
  currentWarnings (): string[] {
    return [...this.warnings]
  }

  /** The advertised load: nothing free while no work is taken (owner busy, or --max-tasks reached). */
  load (s: LedgerSnapshot, cpuUtil: number): Load {
    const load: Load = { cpusFree: s.cpusFree, memFree: s.memFree, gpusFree: s.gpusFree, running: s.running, queued: 0, cpuUtil }
    if (this.init.ledger.refusal() !== undefined) Object.assign(load, { cpusFree: 0, memFree: 0, gpusFree: [] })
    if (this.ownerState() === 'busy') load.ownerBusy = true
    if (this.draining) load.draining = true
    else if (this.policy.paused === true) load.paused = true
    return load
  }

  /**
   * Whether a command sent by `peer` (the id its connection authenticated) may run here;
   * undefined when it may, else why not, for the submitter.
   */
  refusal (peer: string): string | undefined {
    const allowed = this.policy.acceptFrom
    if (allowed === undefined || allowed.includes(peer)) return undefined
    return `${this.init.resources.host} runs commands only from the members its owner accepts (--accept-from), and not from ${peer}`
  }

  /**
   * `vgrid agent set`: saved first (a config file that cannot be written changes nothing), then
   * applied. `--resume` also calls off a drain.
   */
  set (patch: PolicyPatch): { policy: PolicyView, warnings: string[], saved?: string } {
    if (Object.keys(patch).length === 0) return { policy: this.view(), warnings: [] }
    const next = applyPolicyPatch(this.share, this.policy, patch)
    const saved = savePolicyPatch(this.init.home, patch)
    this.share = next.share
    this.policy = next.policy
    if (patch.paused === false && this.draining) {
      this.draining = false
      this.init.onResume?.()
    }
    this.apply()
    log.debug('policy changed', patch)
    return { policy: this.view(), warnings: this.currentWarnings(), saved }
  }

  /**
   * A reload (SIGHUP): the share and policy as the configuration now resolves them, in
   * place of the current ones. Nothing is saved: the configuration is where they came from.
   * As with `set`, lowering a limit below what runs stops nothing.
   */
  replace (share: ShareConfig, policy: OwnerPolicy): { policy: PolicyView, warnings: string[] } {
    this.share = { ...share, pools: [...share.pools], labels: { ...share.labels } }
    this.policy = { ...policy, ...(policy.acceptFrom !== undefined ? { acceptFrom: [...policy.acceptFrom] } : {}) }
    this.apply()
    log.debug('policy reloaded', this.share, this.policy)
    return { policy: this.view(), warnings: this.currentWarnings() }
  }

  view (): PolicyView {
    const r = this.init.resources
    const v: PolicyView = {
      host: r.host,
      cores: r.cpu.cores,
      memBytes: r.memBytes,
      gpus: r.gpus.map((g) => g.index),
      offer: { cpus: this.offer.cpus, memBytes: this.offer.memBytes, gpus: [...this.offer.gpus] },
      nice: this.policy.nice,
      onlyWhenIdle: this.policy.onlyWhenIdle,
      running: this.init.ledger.snapshot().running,
      lending: this.lending()
    }
    if (this.policy.maxTasks !== undefined) v.maxTasks = this.policy.maxTasks
    if (this.policy.acceptFrom !== undefined) {
      v.acceptFrom = this.policy.acceptFrom.map((peer) => {
        const host = this.init.hostOf?.(peer)
        return host !== undefined ? { peer, host } : { peer }
      })
    }
    if (this.monitor !== undefined) {
      const a = this.monitor.activity
      v.owner = a.load === undefined ? { state: a.state } : { state: a.state, load: Math.round(a.load * 10) / 10 }
    }
    return v
  }

  /** `vgrid agent stop --drain`: no new command from now on (running ones go on). */
  drain (): void {
    if (this.draining) return
    this.draining = true
    this.apply()
  }

  stop (): void {
    this.monitor?.stop()
    this.monitor = undefined
  }

  /** Whether it takes new commands, as `vgrid status` and `agent set` show it. */
  lending (): 'yes' | 'paused' | 'draining' {
    return this.draining ? 'draining' : this.policy.paused === true ? 'paused' : 'yes'
  }

  private ownerState (): OwnerState | undefined {
    return this.monitor?.activity.state
  }

  /** Brings the ledger, the niceness, the idle monitor and the advertisement in line with the policy. */
  private apply (): void {
    const { resources, ledger } = this.init
    const { offer, warnings } = computeOffer(this.share, resources)
    this.warnings = warnings
    this.offer = offer
    // --max-tasks 0 is not advertised as such: members of earlier versions refuse a whole
    // advertisement with it. The load shows nothing free, and the ledger refuses every claim.
    if (this.policy.maxTasks !== undefined && this.policy.maxTasks > 0) this.offer.maxTasks = this.policy.maxTasks
    if (this.policy.onlyWhenIdle) this.offer.onlyWhenIdle = true
    if (this.policy.acceptFrom !== undefined) this.offer.acceptFrom = [...this.policy.acceptFrom]
    setDefaultNiceness(this.policy.nice)
    if (this.policy.onlyWhenIdle && this.monitor === undefined) {
      const env = this.init.env ?? process.env
      const source = ownerLoadSource(() => this.init.guests.pgids(), env)
      this.monitor = startIdleMonitor(source, idleRule(env), (state, load) => { this.ownerChanged(state, load) })
    } else if (!this.policy.onlyWhenIdle && this.monitor !== undefined) {
      this.stop()
    }
    // Lowering what is lent stops no command: running reservations keep what they hold.
    ledger.update({
      cpus: offer.cpus,
      memBytes: offer.memBytes,
      gpus: resources.gpus.filter((g) => offer.gpus.includes(g.index)),
      pools: offer.pools,
      labels: offer.labels,
      ...(this.policy.maxTasks !== undefined ? { maxTasks: this.policy.maxTasks } : {}),
      ...(this.closedReason() !== undefined ? { closed: this.closedReason() } : {})
    })
    this.init.publish()
  }

  /** Why no new command is taken now, most lasting first; undefined when they are. */
  private closedReason (): string | undefined {
    if (this.draining) return DRAINING_REASON
    if (this.policy.paused === true) return PAUSED_REASON
    if (this.monitor !== undefined && this.monitor.activity.state !== 'idle') return CLOSED_REASON
    return undefined
  }

  private ownerChanged (state: OwnerState, load: number | undefined): void {
    const pct = load === undefined ? '' : ` (load ${Math.round(load)} % of the cores)`
    this.apply()
    if (state !== 'busy') {
      log.info(`the owner is idle${pct}: lending again`)
      return
    }
    const n = this.init.guests.pgids().length
    log.info(`the owner is busy${pct}: lending nothing${n > 0 ? `, stopping ${n} command${n === 1 ? '' : 's'}` : ''}`)
    if (n === 0) return
    const host = this.init.resources.host
    this.init.guests.stopAll(
      `the owner of ${host} came back: the command was stopped (SIGTERM, SIGKILL after ${OWNER_RETURN_KILL_GRACE_MS / 1000} s)`,
      `${host} lends only while its owner is idle; vbatch --retries N places such a task again on another member`,
      OWNER_RETURN_KILL_GRACE_MS
    ).catch((err) => { log.warn('stopping the guests failed', err) })
  }
}
