#!/usr/bin/env node
require('./bundled.js').runBundled('vrun')
