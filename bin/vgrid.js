#!/usr/bin/env -S node --max-semi-space-size=4
// A 4 MB young generation keeps a long-running agent's heap near what it uses: idle RSS
// ~78 MB instead of ~104 MB after work, at no measurable cost to sync throughput.
// (CommonJS, as every file of bin/: see bundled.js.)
import('../dist/src/cli/vgrid.js').then(async ({ main }) => { await main() })
