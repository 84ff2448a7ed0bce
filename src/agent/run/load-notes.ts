/**
 * What this agent knows of a member's room before the member's next advertisement says it:
 * the claims it won there (taken) and the ends of its own commands there (freed).
 *
 * A member advertises a change of its load at most every MIN_PUBLISH_GAP_MS, and gossip adds
 * its hops. Placed by advertisements alone, a fan-out of short commands pinned to one member
 * started 4 a second: each freed core waited for the member's next advertisement, and a
 * core just claimed looked free until then (a claim refused for nothing). The submitter
 * learns both first-hand, from its own claims and its own commands' exits.
 *
 * A note adjusts the advertisement it was made against, and is dropped as soon as a newer one
 * arrives, which says the same first-hand. Notes only guide: the member's claim decides
 * (claim.ts), so a note that is wrong costs one refused claim, as a stale view does.
 */
import type { PeerView } from '../../grid/index.js'

/** The room a run holds: what its request reserved on the member. */
export interface Room {
  cpus: number
  memBytes?: number
}

interface Note {
  startedAt: number
  seq: number
  cpus: number
  memBytes: number
  running: number
}

/** Members with a note at most; past it, all are dropped (the next advertisements say the same). */
const MAX_NOTES = 4096

export class LoadNotes {
  private readonly notes = new Map<string, Note>()
  private readonly listeners = new Set<() => void>()

  /** A claim on `member` (as the view showed it when drawn) was won: its room is taken. */
  taken (member: PeerView, room: Room): void {
    this.add(member, -1, room)
  }

  /** The command this agent ran on `member` (as the view shows it now) has ended: its room is free. */
  freed (member: PeerView, room: Room): void {
    this.add(member, 1, room)
    for (const fn of [...this.listeners]) fn()
  }

  /** Calls `fn` each time room is freed; returns the unsubscribe. */
  onFreed (fn: () => void): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  /** The view with the notes applied: free room within what each member lends. */
  adjust (view: PeerView[]): PeerView[] {
    if (this.notes.size === 0) return view
    return view.map((p) => {
      const n = this.notes.get(p.peer)
      if (n === undefined || p.self) return p
      if (n.startedAt !== p.startedAt || n.seq !== p.seq) {
        // it has advertised since: its own word is newer than ours
        this.notes.delete(p.peer)
        return p
      }
      return {
        ...p,
        load: {
          ...p.load,
          cpusFree: clamp(p.load.cpusFree + n.cpus, p.offer.cpus),
          memFree: clamp(p.load.memFree + n.memBytes, p.offer.memBytes),
          running: Math.max(0, p.load.running + n.running)
        }
      }
    })
  }

  private add (member: PeerView, sign: 1 | -1, room: Room): void {
    if (member.self) return
    let n = this.notes.get(member.peer)
    if (n === undefined || n.startedAt !== member.startedAt || n.seq !== member.seq) {
      if (this.notes.size >= MAX_NOTES) this.notes.clear()
      n = { startedAt: member.startedAt, seq: member.seq, cpus: 0, memBytes: 0, running: 0 }
      this.notes.set(member.peer, n)
    }
    n.cpus += sign * room.cpus
    n.memBytes += sign * (room.memBytes ?? 0)
    n.running -= sign
  }
}

function clamp (n: number, max: number): number {
  return Math.min(Math.max(0, n), max)
}
