#!/usr/bin/env node
import { main } from '../dist/src/cli/vgrid.js'
await main()
