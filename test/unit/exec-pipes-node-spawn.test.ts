/**
 * The same behaviour of commands on pipes where they are started by Node itself: an agent
 * without Perl, or whose launcher died (exec/launcher.ts), falls back to it.
 */
import { beforeAll } from 'vitest'

process.env.VGRID_LAUNCHER = 'node'
beforeAll(async () => {
  const { defaultLauncher } = await import('../../src/exec/launcher.js')
  if (defaultLauncher() !== undefined) throw new Error('VGRID_LAUNCHER=node should leave commands to Node')
})
await import('./exec-pipes.test.js')
