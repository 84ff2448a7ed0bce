import { configDefaults, defineConfig } from 'vitest/config'

/**
 * Suites that stop, kill, freeze and restart agents, fill disks, start a 16-agent grid or
 * 200 sub-tasks, run every example of the README and the seeds, wait out join timeouts or a
 * silent member's expiry, or drive a headless Chromium: minutes each, or a browser to install. `npm test` leaves them
 * out so that it stays under 5 minutes on a 2-core machine; `npm run test:heavy` runs them,
 * and `.ci/run` runs both.
 */
const HEAVY = [
  'test/e2e/faults.test.ts',
  'test/e2e/faults-data.test.ts',
  'test/e2e/tasks-restart.test.ts',
  'test/e2e/guests-faults.test.ts',
  'test/e2e/tasks-scale.test.ts',
  'test/e2e/disk.test.ts',
  'test/e2e/drain.test.ts',
  'test/e2e/no-growth.test.ts',
  'test/grid/scale.test.ts',
  'test/browser/dashboard.test.ts',
  'test/e2e/readme.test.ts',
  'test/e2e/examples.test.ts',
  'test/e2e/join.test.ts',
  'test/e2e/member-frozen.test.ts',
  'test/grid/membership-warnings.test.ts'
]

export default defineConfig({
  test: {
    setupFiles: ['./src/common/polyfill.ts', './test/helpers/cleanup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // e2e tests start real agent processes; two cores do not like many at once
    maxWorkers: 2,
    fileParallelism: true,
    projects: [
      { extends: true, test: { name: 'main', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...HEAVY] } },
      { extends: true, test: { name: 'heavy', include: HEAVY } }
    ]
  }
})
