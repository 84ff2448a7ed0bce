/**
 * A real headless Chromium for the dashboard's tests: Debian's `chromium` (or the browser
 * named by VGRID_CHROMIUM), driven by playwright-core. Missing, it is an error that says how
 * to install it: these tests never skip silently.
 */
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { chromium, type Browser, type Page } from 'playwright-core'
import { ROOT } from './procs.js'

/** Screenshots for a reviewer to look at (ignored by git). */
export const ARTIFACTS = path.join(ROOT, 'test', 'artifacts')

const CANDIDATES = ['chromium', 'chromium-browser', 'google-chrome-stable', 'google-chrome']

export function findChromium (): string {
  const named = process.env.VGRID_CHROMIUM
  if (named !== undefined && named !== '') {
    if (!fs.existsSync(named)) throw new Error(`VGRID_CHROMIUM=${named}: no such file`)
    return named
  }
  for (const name of CANDIDATES) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
    if (r.status === 0 && r.stdout.trim() !== '') return r.stdout.trim()
  }
  throw new Error('the browser tests need Chromium, and none was found: install it with `sudo apt-get install -y chromium` ' +
    '(Debian, Ubuntu: the package `chromium` or `chromium-browser`), or name a Chrome/Chromium binary in VGRID_CHROMIUM. ' +
    '.ci/run installs it when missing.')
}

export async function launchChromium (): Promise<Browser> {
  return await chromium.launch({
    executablePath: findChromium(),
    headless: true,
    // as root (containers, CI) Chromium's own sandbox cannot start
    args: [...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), '--disable-dev-shm-usage', '--no-first-run']
  })
}

/** What a page did that it should not have: script errors, dialogs (alert), failed requests of our origin. */
export interface PageWatch { errors: string[], dialogs: string[] }

export function watchPage (page: Page): PageWatch {
  const w: PageWatch = { errors: [], dialogs: [] }
  page.on('pageerror', (err) => { w.errors.push(err.message) })
  page.on('console', (msg) => { if (msg.type() === 'error') w.errors.push(`console: ${msg.text()}`) })
  page.on('dialog', (d) => { w.dialogs.push(`${d.type()}: ${d.message()}`); void d.dismiss() })
  return w
}

export async function screenshot (page: Page, name: string): Promise<string> {
  fs.mkdirSync(ARTIFACTS, { recursive: true })
  const file = path.join(ARTIFACTS, name)
  await page.screenshot({ path: file, fullPage: false })
  return file
}
