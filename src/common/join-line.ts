/**
 * The line printed to add a machine to the grid (the agent's banner, `vgrid status`). It
 * names this very binary: `npx vgrid` outside the checkout would look `vgrid` up in the npm
 * registry, a different package, and run it with the grid's secret. The token goes through
 * stdin (`echo` is a shell builtin), never on a command line that `ps` shows.
 */
import { basename, isAbsolute } from 'node:path'

/** How to run the `vgrid` that runs now: its absolute path, else npx limited to what is installed. */
export function vgridCommand (script: string | undefined = process.argv[1]): string {
  if (script !== undefined && isAbsolute(script) && /^vgrid(\.js)?$/.test(basename(script))) return shellWord(script)
  return 'npx --no-install vgrid'
}

export function joinLine (token: string, command: string = vgridCommand()): string {
  return `echo ${shellWord(token)} | ${command} agent --join -`
}

/** A word as a POSIX shell reads it back: bare when it holds nothing special, else single-quoted. */
export function shellWord (s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`
}
