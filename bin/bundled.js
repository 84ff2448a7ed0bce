// The start of vrun and vbatch: one file to load instead of ~60 (scripts/bundle-cli.mjs). The
// bundle when it is as new as tsc's output, else the modules themselves (a tsc run alone must
// not leave an old bundle in use).
import { statSync } from 'node:fs'

const dir = new URL('../dist/src/cli/', import.meta.url)
const mtime = (f) => { try { return statSync(new URL(f, dir)).mtimeMs } catch { return -1 } }

/** Runs `name`'s main(), from its bundle or from its modules. */
export async function runBundled (name) {
  const file = mtime(`${name}.bundle.js`) >= mtime(`${name}.js`) ? `${name}.bundle.js` : `${name}.js`
  const { main } = await import(new URL(file, dir).href)
  await main()
}
