/** The vgrid version and where the package is, read once from package.json (shared by the CLI and the agent). */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

function readPackage (): { version: string, root: string | undefined } {
  // dist/src/common/version.js when built, src/common/version.ts under vitest.
  for (const rel of ['../../../package.json', '../../package.json']) {
    try {
      const url = new URL(rel, import.meta.url)
      const pkg = JSON.parse(readFileSync(url, 'utf8')) as { name?: unknown, version?: unknown }
      if (pkg.name === 'vgrid' && typeof pkg.version === 'string') return { version: pkg.version, root: fileURLToPath(new URL('.', url)).replace(/\/$/, '') }
    } catch {}
  }
  return { version: '0.0.0', root: undefined }
}

const pkg = readPackage()
export const VERSION = pkg.version
/** The package's directory (where package.json and bin/ are), however this module was loaded. */
export const PACKAGE_ROOT = pkg.root ?? fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '')
