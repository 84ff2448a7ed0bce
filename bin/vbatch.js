#!/usr/bin/env node
import { runBundled } from './bundled.js'
await runBundled('vbatch')
