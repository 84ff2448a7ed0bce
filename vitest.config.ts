import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['./src/common/polyfill.ts', './test/helpers/cleanup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // e2e tests start real agent processes; two cores do not like many at once
    maxWorkers: 2,
    fileParallelism: true
  }
})
