/** Guests as the guest suites see them: their workspaces, and their processes on this machine. */
import fs from 'node:fs'
import path from 'node:path'
import { tempDir } from './procs.js'

/** A fresh workspace with these files, by its real path. */
export function workspace (files: Record<string, string> = {}): string {
  const dir = tempDir('vgrid-guest-ws-')
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
    fs.writeFileSync(path.join(dir, name), content)
  }
  return fs.realpathSync(dir)
}

/** Processes of this machine whose command line holds `marker`. */
export function processesWith (marker: string): number[] {
  const found: number[] = []
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const cmd = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ')
      if (cmd.includes(marker) && !cmd.includes('bwrap') && !cmd.includes('vrun')) found.push(Number(name))
    } catch {}
  }
  return found
}
