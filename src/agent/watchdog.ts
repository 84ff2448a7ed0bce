/**
 * Guests end when their agent can no longer account for them (DESIGN §5). A killed agent
 * takes its sandboxes down itself (bwrap's --die-with-parent); a *frozen* one (SIGSTOP, a
 * swapped-out machine, a debugger) cannot, while the member that submitted the task soon
 * takes it for lost and runs it elsewhere: the same task would run twice at once.
 *
 * So a small process beside the agent, a shell reading a pipe, holds the list of running
 * guests' process groups. The agent writes `+PGID` and `-PGID` as guests start and end, and
 * an empty line every WATCHDOG_BEAT_MS. When nothing has come for GUEST_LEASE_MS, the agent
 * is taken for frozen and every listed group is killed; at the end of the pipe (the agent
 * died) too, and the watchdog exits. A submitter waits LOST_FENCE_MS before it places a lost
 * task again, longer than a frozen executor's guests can outlive it.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createLogger } from '../common/log.js'

const log = createLogger('watchdog')

/** How often the agent says it is alive. */
export const WATCHDOG_BEAT_MS = 1_000
/** Silence after which the watchdog kills every guest. An event loop stalled this long is stalled for good. */
export const GUEST_LEASE_MS = 6_000
/**
 * How long a submitter waits before placing a lost task again: a frozen executor's guests
 * are dead by then (the lease, one beat, and a margin), and a member is lost at the earliest
 * 10 s after it froze (libp2p's ping timeout floor) or 12 s (its advertisements expire).
 */
export const LOST_FENCE_MS = GUEST_LEASE_MS + WATCHDOG_BEAT_MS + 1_000

/** bash: `read -t` takes a timeout in seconds (fractions allowed). */
const SCRIPT = `
set -u
declare -A g
killall_ () { for p in "\${!g[@]}"; do kill -KILL -- "-$p" 2>/dev/null; kill -KILL -- "$p" 2>/dev/null; done; g=(); }
while :; do
  IFS= read -r -t "$1" line; rc=$?
  if [ $rc -gt 128 ]; then [ \${#g[@]} -gt 0 ] && echo "killed \${#g[@]} guest(s): the agent said nothing for $1 s" >&2; killall_; continue; fi
  if [ $rc -ne 0 ]; then killall_; exit 0; fi
  case "$line" in
    +[0-9]*) g[\${line#+}]=1 ;;
    -[0-9]*) unset "g[\${line#-}]" ;;
  esac
done
`

export class Watchdog {
  private constructor (private readonly child: ChildProcessWithoutNullStreams, private readonly beat: NodeJS.Timeout) {}

  /** Undefined where there is no bash: guests then rely on --die-with-parent alone. */
  static start (leaseMs = GUEST_LEASE_MS): Watchdog | undefined {
    let child: ChildProcessWithoutNullStreams
    try {
      child = spawn('/bin/bash', ['-c', SCRIPT, 'vgrid-watchdog', String(leaseMs / 1000)], { stdio: ['pipe', 'pipe', 'pipe'] })
    } catch (err) {
      log.warn('no watchdog for guests (bash could not be started): a frozen agent\'s guests run on', err)
      return undefined
    }
    child.on('error', (err) => { log.warn('the guests\' watchdog failed', err) })
    child.stdin.on('error', () => {})
    child.stderr.on('data', (d: Buffer) => { log.warn(d.toString().trim()) })
    const beat = setInterval(() => { if (child.stdin.writable) child.stdin.write('\n') }, WATCHDOG_BEAT_MS)
    beat.unref()
    child.unref()
    ;(child.stdin as unknown as { unref?: () => void }).unref?.()
    ;(child.stdout as unknown as { unref?: () => void }).unref?.()
    ;(child.stderr as unknown as { unref?: () => void }).unref?.()
    return new Watchdog(child, beat)
  }

  add (pgid: number): void {
    if (this.child.stdin.writable) this.child.stdin.write(`+${pgid}\n`)
  }

  remove (pgid: number): void {
    if (this.child.stdin.writable) this.child.stdin.write(`-${pgid}\n`)
  }

  stop (): void {
    clearInterval(this.beat)
    this.child.stdin.end()
  }
}
