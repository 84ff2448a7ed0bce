#!/usr/bin/env node
import { main } from '../dist/src/cli/vbatch.js'
await main()
