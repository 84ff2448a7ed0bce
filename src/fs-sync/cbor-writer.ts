/**
 * A minimal CBOR writer for the records of types.ts, producing exactly what cborg's default
 * `encode` produces for them (shortest heads, definite lengths, map keys in the order the
 * caller writes them, which must be cborg's: by length, then bytewise). It is ~10× faster
 * than building objects for cborg, which matters because every rescan re-encodes every
 * directory; test/unit/fs-sync-codec.test.ts checks it byte for byte against cborg.
 *
 * Only what records use: unsigned and negative safe integers, booleans, text, bytes, arrays
 * and maps. No floats: every number in a record is an integer.
 */

const INITIAL_BYTES = 64 * 1024
const MAJOR_UINT = 0
const MAJOR_NEGINT = 1
const MAJOR_BYTES = 2
const MAJOR_TEXT = 3
const MAJOR_ARRAY = 4
const MAJOR_MAP = 5
const FALSE = 0xf4
const TRUE = 0xf5
const TWO_POW_32 = 2 ** 32

export class CborWriter {
  private buf = Buffer.allocUnsafe(INITIAL_BYTES)
  private len = 0

  /** Starts a new value, keeping the buffer. */
  reset (): this {
    this.len = 0
    return this
  }

  /** A copy of what was written: the writer's buffer is reused. */
  bytes (): Uint8Array {
    return new Uint8Array(this.buf.subarray(0, this.len))
  }

  get length (): number {
    return this.len
  }

  map (entries: number): this {
    return this.head(MAJOR_MAP, entries)
  }

  array (items: number): this {
    return this.head(MAJOR_ARRAY, items)
  }

  /** A map key of one ASCII character (all record keys are). */
  key (k: string): this {
    this.ensure(2)
    this.buf[this.len++] = (MAJOR_TEXT << 5) | 1
    this.buf[this.len++] = k.charCodeAt(0)
    return this
  }

  int (n: number): this {
    if (!Number.isSafeInteger(n)) throw new RangeError(`not a safe integer: ${n}`)
    return n >= 0 ? this.head(MAJOR_UINT, n) : this.head(MAJOR_NEGINT, -1 - n)
  }

  bool (b: boolean): this {
    this.ensure(1)
    this.buf[this.len++] = b ? TRUE : FALSE
    return this
  }

  text (s: string): this {
    const n = Buffer.byteLength(s, 'utf8')
    this.head(MAJOR_TEXT, n)
    this.ensure(n)
    this.len += this.buf.write(s, this.len, n, 'utf8')
    return this
  }

  bin (b: Uint8Array): this {
    this.binHead(b.byteLength)
    this.ensure(b.byteLength)
    this.buf.set(b, this.len)
    this.len += b.byteLength
    return this
  }

  /** The head of a byte string of `n` bytes whose bytes the caller sends apart (protocol/sync.ts blobReplyPieces). */
  binHead (n: number): this {
    return this.head(MAJOR_BYTES, n)
  }

  /** One byte string made of `parts` end to end (chunk hashes), without joining them first. */
  binConcat (parts: readonly Uint8Array[]): this {
    let n = 0
    for (const p of parts) n += p.byteLength
    this.head(MAJOR_BYTES, n)
    this.ensure(n)
    for (const p of parts) {
      this.buf.set(p, this.len)
      this.len += p.byteLength
    }
    return this
  }

  /**
   * Any value a record may hold, written as cborg's `encode` writes it: safe integers,
   * booleans, text, bytes, arrays and plain objects (maps, keys in cborg's order). False for
   * anything else (a float, -0, null, a bigint, a Map…), which no record holds; what was
   * written then means nothing. For the check that a record from a peer is canonical
   * (tree-decode.ts), at a tenth of the cost of cborg's encoder.
   */
  value (v: unknown): boolean {
    switch (typeof v) {
      case 'number':
        if (!Number.isSafeInteger(v) || Object.is(v, -0)) return false
        this.int(v)
        return true
      case 'boolean':
        this.bool(v)
        return true
      case 'string':
        this.text(v)
        return true
      case 'object': {
        if (v instanceof Uint8Array) {
          this.bin(v)
          return true
        }
        if (Array.isArray(v)) {
          this.array(v.length)
          for (const item of v) if (!this.value(item)) return false
          return true
        }
        if (v === null || Object.getPrototypeOf(v) !== Object.prototype) return false
        const record = v as Record<string, unknown>
        const keys = Object.keys(record).sort(compareKeys)
        this.map(keys.length)
        for (const k of keys) {
          this.text(k)
          if (!this.value(record[k])) return false
        }
        return true
      }
      default:
        return false
    }
  }

  /** Whether what was written is `bytes`, byte for byte. */
  equals (bytes: Uint8Array): boolean {
    return this.len === bytes.byteLength && this.buf.compare(bytes, 0, bytes.byteLength, 0, this.len) === 0
  }

  private head (major: number, n: number): this {
    this.ensure(9)
    const m = major << 5
    const buf = this.buf
    if (n < 24) {
      buf[this.len++] = m | n
    } else if (n < 0x100) {
      buf[this.len++] = m | 24
      buf[this.len++] = n
    } else if (n < 0x10000) {
      buf[this.len++] = m | 25
      this.len = buf.writeUInt16BE(n, this.len)
    } else if (n < TWO_POW_32) {
      buf[this.len++] = m | 26
      this.len = buf.writeUInt32BE(n, this.len)
    } else {
      buf[this.len++] = m | 27
      this.len = buf.writeUInt32BE(Math.floor(n / TWO_POW_32), this.len)
      this.len = buf.writeUInt32BE(n % TWO_POW_32, this.len)
    }
    return this
  }

  private ensure (n: number): void {
    if (this.len + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n))
    this.buf.copy(next, 0, 0, this.len)
    this.buf = next
  }
}

/** cborg's order of text map keys: by length in UTF-8, then bytewise. */
function compareKeys (a: string, b: string): number {
  if (a.length === 1 && b.length === 1 && a.charCodeAt(0) < 0x80 && b.charCodeAt(0) < 0x80) return a.charCodeAt(0) - b.charCodeAt(0)
  const x = Buffer.from(a, 'utf8')
  const y = Buffer.from(b, 'utf8')
  return x.length !== y.length ? x.length - y.length : Buffer.compare(x, y)
}
