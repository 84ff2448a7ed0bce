/** The ERR_BAD_ARGUMENT that `fn` must throw; fails the test when it returns. */
import { expect } from 'vitest'
import { VgridError } from '../../src/common/errors.js'

export function badArg (fn: () => unknown): VgridError {
  try { fn() } catch (err) {
    expect(err).toBeInstanceOf(VgridError)
    expect((err as VgridError).code).toBe('ERR_BAD_ARGUMENT')
    return err as VgridError
  }
  throw new Error('expected ERR_BAD_ARGUMENT')
}
