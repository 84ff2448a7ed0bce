/** The vgrid version, read once from package.json (shared by the CLI and the agent). */
import { readFileSync } from 'node:fs'

function readVersion (): string {
  // dist/src/common/version.js when built, src/common/version.ts under vitest.
  for (const rel of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: unknown, version?: unknown }
      if (pkg.name === 'vgrid' && typeof pkg.version === 'string') return pkg.version
    } catch {}
  }
  return '0.0.0'
}

export const VERSION = readVersion()
