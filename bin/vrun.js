#!/usr/bin/env node
// One file to load instead of ~60 (scripts/bundle-cli.mjs): the bundle when it is as new as
// tsc's output, else the modules themselves (a tsc run alone must not leave an old bundle in use).
import { statSync } from 'node:fs'
const dir = new URL('../dist/src/cli/', import.meta.url)
const mtime = (f) => { try { return statSync(new URL(f, dir)).mtimeMs } catch { return -1 } }
const { main } = await import(mtime('vrun.bundle.js') >= mtime('vrun.js') ? '../dist/src/cli/vrun.bundle.js' : '../dist/src/cli/vrun.js')
await main()
