/** Limits and timings of running a command. Wire sizes live in protocol/session.ts. */

/** Between SIGTERM (SIGHUP under a pseudo-terminal) and SIGKILL when a command is cancelled. */
export const KILL_GRACE_MS = 5_000

/**
 * Stdin bytes buffered for a command that does not read them fast enough. Past this the
 * session stops reading inputs, which pushes back on the submitter through the channel.
 */
export const STDIN_HIGH_WATER_BYTES = 8 * 1024 * 1024

/** How often a paused pseudo-terminal checks whether its process has exited (see spawn-pty.ts). */
export const PTY_EXIT_POLL_MS = 20

/** Cap on the output read from a pseudo-terminal after its process ended (kernel buffers: ~64 KiB). */
export const PTY_TAIL_MAX_BYTES = 16 * 1024 * 1024

/** How often to look whether a process group is gone while waiting for it to die. */
export const GROUP_POLL_MS = 25

/** After SIGKILL, how long to wait for a process group to disappear before giving up on it. */
export const GROUP_KILL_WAIT_MS = 2_000

/** What execvp searches when the environment has no PATH. */
export const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin'

/** Exit codes a shell uses when a command cannot run, and ours for a failure to start. */
export const EXIT_NOT_FOUND = 127
export const EXIT_NOT_EXECUTABLE = 126
export const EXIT_NOT_STARTED = 255
