/**
 * The dashboard's files (`ui/` of the package). The server never maps a URL onto the disk: at
 * start it lists the regular files of that directory (no symlinks, no dot-files, only types it
 * knows), and a request is served only when its path is one of them, by exact match. A path
 * with `..`, an encoded slash or anything else not on the list is simply not found.
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8'
}
/** A directory of the dashboard deeper than this, or more files, is not listed. */
const MAX_DEPTH = 8
const MAX_FILES = 2_000

export interface Asset { file: string, type: string }

/** The package's `ui/` directory: up from this file (src/http or dist/src/http). */
export function defaultAssetDir (): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (fs.existsSync(path.join(dir, 'ui', 'index.html')) && fs.existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'ui')
    const up = path.dirname(dir)
    if (up === dir) return undefined
    dir = up
  }
}

/** URL path → file, for every servable file under `root`; `/` is index.html. */
export function listAssets (root: string): Map<string, Asset> {
  const out = new Map<string, Asset>()
  const real = fs.realpathSync(root)
  const walk = (dir: string, rel: string, depth: number): void => {
    if (depth > MAX_DEPTH) return
    for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
      if (out.size >= MAX_FILES) return
      if (d.name.startsWith('.')) continue
      const file = path.join(dir, d.name)
      const url = `${rel}/${d.name}`
      // Dirent does not follow symlinks: a link (to a file or out of the tree) is neither
      if (d.isDirectory()) walk(file, url, depth + 1)
      else if (d.isFile()) {
        const type = TYPES[path.extname(d.name).toLowerCase()]
        if (type !== undefined && /^[A-Za-z0-9._/-]+$/.test(url)) out.set(url, { file, type })
      }
    }
  }
  walk(real, '', 0)
  const index = out.get('/index.html')
  if (index !== undefined) out.set('/', index)
  return out
}
