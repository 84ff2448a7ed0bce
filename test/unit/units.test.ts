import { describe, expect, it } from 'vitest'
import { VgridError } from '../../src/common/errors.js'
import { formatBytes, MAX_SIZE_BYTES, parseSize } from '../../src/common/units.js'

const K = 2 ** 10
const M = 2 ** 20
const G = 2 ** 30
const T = 2 ** 40

describe('parseSize', () => {
  it.each([
    ['0', 0],
    ['1024', 1024],
    ['1024B', 1024],
    ['1024b', 1024],
    ['1K', K],
    ['4k', 4 * K],
    ['4KiB', 4 * K],
    ['512M', 512 * M],
    ['512MB', 512 * M],
    ['16G', 16 * G],
    ['16g', 16 * G],
    ['16GB', 16 * G],
    ['16GiB', 16 * G],
    ['16gib', 16 * G],
    ['16 G', 16 * G],
    ['  16G  ', 16 * G],
    ['1.5T', 1.5 * T],
    ['.5G', 0.5 * G],
    ['0.5K', 512],
    ['2P', 2 * 2 ** 50],
    [16 * G, 16 * G],
    [0, 0]
  ])('%j is %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes)
  })

  it.each([
    '', ' ', 'G', '-1', '-1G', '16X', '16 GB B', '16GG', '1,5G', '1.5', '1e9', '0x10', 'sixteen',
    '16iB', 'NaN', 'Infinity', '1..5G', '16G!', '5P', '99999999999T'
  ])('refuses %j with ERR_BAD_ARGUMENT naming it', input => {
    let err: unknown
    try { parseSize(input, '--mem') } catch (e) { err = e }
    expect(err).toBeInstanceOf(VgridError)
    expect((err as VgridError).code).toBe('ERR_BAD_ARGUMENT')
    expect((err as VgridError).message).toContain('--mem')
    expect((err as VgridError).message).toContain(JSON.stringify(input.slice(0, 40)).slice(1, -1))
  })

  it('says what is accepted', () => {
    expect(() => parseSize('lots')).toThrow(/512M, 16G.*binary/)
  })

  it.each([-1, 1.5, NaN, Infinity, MAX_SIZE_BYTES + 1])('refuses the number %d', n => {
    expect(() => parseSize(n)).toThrow(VgridError)
  })

  it('accepts up to MAX_SIZE_BYTES', () => {
    expect(parseSize(`${MAX_SIZE_BYTES}`)).toBe(MAX_SIZE_BYTES)
    expect(() => parseSize('5P')).toThrow(/too large/)
  })
})

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [512, '512 B'],
    [1023, '1023 B'],
    [1024, '1 KiB'],
    [1536, '1.5 KiB'],
    [512 * M, '512 MiB'],
    [16 * G, '16 GiB'],
    [16_750_000_000, '15.6 GiB'],
    [25_276_514_304, '23.5 GiB'],
    [1.5 * T, '1.5 TiB'],
    [M - 1, '1 MiB'],
    [-2 * G, '-2 GiB']
  ])('%d → %s', (n, s) => {
    expect(formatBytes(n)).toBe(s)
  })

  it('round-trips through parseSize', () => {
    for (const s of ['512M', '16G', '1.5T']) {
      const [num, unit] = formatBytes(parseSize(s)).split(' ')
      expect(parseSize(`${num}${unit}`)).toBe(parseSize(s))
    }
  })
})
