/**
 * Members whose data plane could not be reached (a firewall that drops its ports would cost
 * every sync the connect timeout): their syncs go over libp2p streams for `retryMs`, then the
 * plane is tried again. At most `max` members are remembered, the oldest forgotten first.
 */
export class Unreachable {
  private readonly since = new Map<string, number>()

  constructor (readonly retryMs: number, private readonly max = 4096, private readonly now: () => number = Date.now) {}

  /** Whether `peer`'s data plane failed within the last `retryMs`. */
  has (peer: string): boolean {
    const t = this.since.get(peer)
    if (t === undefined) return false
    if (this.now() - t < this.retryMs) return true
    this.since.delete(peer)
    return false
  }

  note (peer: string): void {
    this.since.delete(peer)
    if (this.since.size >= this.max) this.since.delete(this.since.keys().next().value as string)
    this.since.set(peer, this.now())
  }
}
