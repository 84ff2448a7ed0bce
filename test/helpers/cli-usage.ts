/** The UsageError that `vgrid ARGV` must give; fails the test when it parses. */
import { expect } from 'vitest'
import { parseVgridArgs } from '../../src/cli/vgrid.js'
import { UsageError } from '../../src/cli/usage-error.js'

export function vgridUsageError (argv: string[]): UsageError {
  try {
    parseVgridArgs(argv)
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError)
    return err as UsageError
  }
  throw new Error(`expected a usage error for ${argv.join(' ')}`)
}
