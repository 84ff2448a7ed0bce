// The start of vrun and vbatch: one CommonJS file to load instead of ~60 ES modules
// (scripts/bundle-cli.mjs). bin/ is CommonJS (bin/package.json), so a command that finds its
// bundle never starts Node's ES module loader: ~13-23 ms of each start on a 2-core machine.
// The bundle runs when it is as new as tsc's output, else the modules themselves (a tsc run
// alone must not leave an old bundle in use).
'use strict'
const { statSync } = require('node:fs')
const path = require('node:path')
const { pathToFileURL } = require('node:url')

const dir = path.join(__dirname, '..', 'dist', 'src', 'cli')
const mtime = (f) => { try { return statSync(path.join(dir, f)).mtimeMs } catch { return -1 } }

/** Runs `name`'s main(), from its bundle or from its modules. */
exports.runBundled = async function runBundled (name) {
  if (mtime(`${name}.bundle.cjs`) >= mtime(`${name}.js`)) {
    await require(path.join(dir, `${name}.bundle.cjs`)).main()
  } else {
    const { main } = await import(pathToFileURL(path.join(dir, `${name}.js`)).href)
    await main()
  }
}
