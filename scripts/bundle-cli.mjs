/**
 * Bundles the client commands that start on every call (vrun, vbatch) into one CommonJS file
 * each, beside tsc's output: dist/src/cli/vrun.bundle.cjs. Node's ESM loader resolves, reads
 * and links each module on its own; vrun loads ~57 of them, and one file instead cuts its
 * start (the figures are in the commit that added this). CommonJS, as bin/ is: a start that
 * never initialises the ES module loader saves ~13-23 ms more. The agent (vgrid) is not
 * bundled: its workers are files of their own, found next to the modules that start them.
 *
 * Run after tsc (`npm run build` does both). bin/vrun.js and bin/vbatch.js use the bundle only
 * when it is newer than tsc's output, so a tsc run alone never leaves a stale bundle in use.
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'rolldown'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const cli = path.join(root, 'dist', 'src', 'cli')

for (const name of ['vrun', 'vbatch']) {
  await build({
    input: path.join(cli, `${name}.js`),
    platform: 'node',
    // Node's own modules stay out; packages go in (the client uses cborg only; patch-package's
    // fixes are to the agent's packages, which no client command loads).
    external: /^node:/,
    logLevel: 'warn',
    // The modules find package.json from their own URL; the bundle lies beside vrun.js, as deep.
    transform: { define: { 'import.meta.url': 'require("node:url").pathToFileURL(__filename).href' } },
    output: { file: path.join(cli, `${name}.bundle.cjs`), format: 'cjs', codeSplitting: false }
  })
}
