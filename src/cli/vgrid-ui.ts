/**
 * `vgrid ui [--url]`: a one-time login link to this agent's dashboard, asked of the agent over
 * the control socket (so only its owner gets one). Opened in the desktop's browser, or printed
 * where there is no desktop or with --url. The link works once, within a minute.
 */
import { spawn } from 'node:child_process'
import { vgridHome } from '../agent/config.js'
import { call } from '../agent/control/client.js'

export interface UiIo {
  env: NodeJS.ProcessEnv
  stdout: NodeJS.WritableStream
  /** Opens a URL in the desktop's browser; resolves false when it could not. */
  open?: (url: string) => Promise<boolean>
}

/** Whether a browser can be opened here: a graphical session. */
export function hasDesktop (env: NodeJS.ProcessEnv): boolean {
  return (env.DISPLAY ?? '') !== '' || (env.WAYLAND_DISPLAY ?? '') !== ''
}

/** xdg-open, detached: the browser outlives this command. */
async function xdgOpen (url: string): Promise<boolean> {
  return await new Promise((resolve) => {
    const child = spawn('xdg-open', [url], { stdio: 'ignore', detached: true })
    child.once('error', () => { resolve(false) })
    child.once('exit', (code) => { resolve(code === 0) })
    child.unref()
  })
}

export async function runUi (urlOnly: boolean, io: UiIo): Promise<number> {
  const { url } = await call(vgridHome(io.env), { t: 'ui-login' })
  if (!urlOnly && hasDesktop(io.env) && await (io.open ?? xdgOpen)(url)) {
    io.stdout.write(`opened the dashboard in your browser (the link works once, for a minute):\n  ${url}\n`)
    return 0
  }
  io.stdout.write(`${url}\n`)
  return 0
}
