#!/usr/bin/env node
import { main } from '../dist/src/cli/vrun.js'
await main()
