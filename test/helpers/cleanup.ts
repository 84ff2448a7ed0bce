/**
 * Setup file of every test file: once its tests are over, the temp directories it made go
 * (agents it started are stopped by its own afterAll hooks first; those of a setup file run
 * after the file's).
 */
import { afterAll } from 'vitest'
import { removeTempDirs, stopAll } from './procs.js'

afterAll(async () => {
  await stopAll()
  removeTempDirs()
})
