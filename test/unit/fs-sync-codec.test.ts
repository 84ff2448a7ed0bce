import { describe, expect, it } from 'vitest'
import { decode, encode } from 'cborg'
import { decodeTree, encodeTree, hashOf, hexOf } from '../../src/fs-sync/tree-codec.js'
import {
  CHUNK_MAX_BYTES, CHUNKS_PER_LIST, HASH_BYTES, INLINE_CHUNKS, MAX_BLOB_BYTES, MAX_ENTRIES_PER_DIR,
  MAX_LINK_TARGET_BYTES, MAX_TREE_DEPTH, MAX_TREE_FILES,
  type ChunkRef, type DirNode, type FileNode, type Hash, type Node
} from '../../src/fs-sync/types.js'
import { buildTree, file, link } from '../helpers/fs-sync-trees.js'
import { CborWriter } from '../../src/fs-sync/cbor-writer.js'

type Blobs = Map<string, Uint8Array>

function getter (blobs: Blobs, calls: string[] = []): (h: Hash) => Promise<Uint8Array> {
  return async (h) => {
    calls.push(hexOf(h))
    const b = blobs.get(hexOf(h))
    if (b === undefined) throw new Error(`no blob ${hexOf(h)}`)
    return b
  }
}

/** A tree as plain data (hex hashes), for deep comparison. */
function plain (node: Node): unknown {
  if (node.kind === 'link') return { link: node.target }
  if (node.kind === 'file') {
    return { size: node.size, exec: node.exec, m: node.mtimeMs, chunks: node.chunks.map((c) => `${hexOf(c.hash)}:${c.size}`) }
  }
  const names = [...node.entries.keys()].sort()
  return { hash: hexOf(node.hash), entries: names.map((n) => [n, plain(node.entries.get(n)!)]) }
}

/** What types.ts says a record is, built with plain objects for cborg. */
function recordObject (dir: DirNode): unknown {
  const names = [...dir.entries.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
  return {
    v: 1,
    e: names.map((n) => {
      const node = dir.entries.get(n)!
      if (node.kind === 'dir') return { n, k: 'd', h: node.hash }
      if (node.kind === 'link') return { n, k: 'l', t: node.target }
      return { n, k: 'f', s: node.size, x: node.exec, m: node.mtimeMs, ...packed(node.chunks) }
    })
  }
}

function packed (chunks: ChunkRef[]): { c: Uint8Array, z: number[] } {
  return { c: Buffer.concat(chunks.map((c) => c.hash)), z: chunks.map((c) => c.size) }
}

function fakeChunks (count: number, size = 1000): ChunkRef[] {
  return Array.from({ length: count }, (_, i) => ({ hash: hashOf(Buffer.from(`chunk ${i}`)), size }))
}

function bigFile (chunks: ChunkRef[]): FileNode {
  return { kind: 'file', size: chunks.reduce((a, c) => a + c.size, 0), exec: false, mtimeMs: 1, chunks }
}

const sample = (): DirNode => buildTree({
  'a.txt': 'hello',
  'é.txt': file('x'.repeat(5000), { exec: true, mtimeMs: -1234 }),
  empty: {},
  also_empty: {},
  src: { 'main.c': 'int main(){}', deep: { deeper: { 'x.bin': file(new Uint8Array(3000)) } } },
  'l-in': link('src/main.c'),
  'l-out': link('../../etc/passwd'),
  'zero': ''
})

describe('encodeTree', () => {
  it('writes exactly the canonical CBOR of types.ts (what cborg encodes)', () => {
    const tree = sample()
    const { rootHash, blobs } = encodeTree(tree)
    const walk = (dir: DirNode): void => {
      const expected = encode(recordObject(dir))
      expect(Buffer.from(blobs.get(hexOf(dir.hash))!)).toEqual(Buffer.from(expected))
      expect(hexOf(hashOf(expected))).toBe(hexOf(dir.hash))
      for (const n of dir.entries.values()) if (n.kind === 'dir') walk(n)
    }
    walk(tree)
    expect(hexOf(rootHash)).toBe(hexOf(tree.hash))
  })

  it('gives equal trees equal hashes, whatever the order of insertion', () => {
    const a = buildTree({ x: '1', y: { z: '2' } })
    const b = buildTree({ y: { z: '2' }, x: '1' })
    expect(hexOf(a.hash)).toBe(hexOf(b.hash))
    const c = buildTree({ x: '1', y: { z: '3' } })
    expect(hexOf(c.hash)).not.toBe(hexOf(a.hash))
  })

  it('puts more than INLINE_CHUNKS chunks in chunk lists of CHUNKS_PER_LIST', async () => {
    const inline = bigFile(fakeChunks(INLINE_CHUNKS))
    const listed = bigFile(fakeChunks(CHUNKS_PER_LIST + 5))
    const tree: DirNode = { kind: 'dir', hash: new Uint8Array(0), entries: new Map<string, Node>([['inline', inline], ['listed', listed]]) }
    const { rootHash, blobs } = encodeTree(tree)
    expect(blobs.size).toBe(3) // the record and two lists
    for (const b of blobs.values()) expect(b.byteLength).toBeLessThanOrEqual(MAX_BLOB_BYTES)
    const lists = [...blobs.values()].filter((b) => b !== blobs.get(hexOf(rootHash)))
    const counts = lists.map((b) => (decode(b) as { z: number[] }).z.length).sort((x, y) => x - y)
    expect(counts).toEqual([5, CHUNKS_PER_LIST])
    const { tree: back } = await decodeTree(rootHash, getter(blobs))
    expect(plain(back)).toEqual(plain(tree))
  })

  it('refuses a directory whose record would be past MAX_BLOB_BYTES', () => {
    const entries = new Map<string, Node>()
    // Each file lists INLINE_CHUNKS chunks inline (~36 bytes each): enough of them overflow a record.
    const files = Math.ceil(MAX_BLOB_BYTES / (INLINE_CHUNKS * 36)) + 10
    for (let i = 0; i < files; i++) entries.set(`f${i}`, bigFile(fakeChunks(INLINE_CHUNKS)))
    expect(() => encodeTree({ kind: 'dir', hash: new Uint8Array(0), entries })).toThrow(expect.objectContaining({ code: 'ERR_WORKSPACE_TOO_LARGE' }))
  })
})

describe('decodeTree', () => {
  it('round-trips a tree with files, exec bits, links, empty and nested directories', async () => {
    const tree = sample()
    const { rootHash, blobs } = encodeTree(tree)
    const { tree: back, stats } = await decodeTree(rootHash, getter(blobs))
    expect(plain(back)).toEqual(plain(tree))
    expect(stats).toEqual({ files: 5, dirs: 6, links: 2, bytes: 5 + 5000 + 12 + 3000, chunks: 1 + 5 + 1 + 3 })
  })

  it('fetches a record shared by several directories once', async () => {
    const { rootHash, blobs } = encodeTree(sample())
    const calls: string[] = []
    await decodeTree(rootHash, getter(blobs, calls))
    expect(new Set(calls).size).toBe(calls.length)
    expect(calls.length).toBe(blobs.size)
    expect(blobs.size).toBe(5) // 6 directories: `empty` and `also_empty` are one record
  })

  it('reuses subtrees of a base tree without fetching them', async () => {
    const base = buildTree({ a: { big: { x: '1', y: '2' }, b: { c: { d: 'old' } } }, top: 't' })
    const next = buildTree({ a: { big: { x: '1', y: '2' }, b: { c: { d: 'new' } } }, top: 't' })
    const { rootHash, blobs } = encodeTree(next)
    const calls: string[] = []
    const { tree } = await decodeTree(rootHash, getter(blobs, calls), { base })
    expect(calls.length).toBe(4) // root, a, b, c: one record per level of the edit
    const a = tree.entries.get('a') as DirNode
    expect(a.entries.get('big')).toBe((base.entries.get('a') as DirNode).entries.get('big'))
    expect(plain(tree)).toEqual(plain(next))
  })

  it('costs nothing when the root is unchanged', async () => {
    const base = sample()
    const calls: string[] = []
    const { tree, stats } = await decodeTree(base.hash, getter(new Map(), calls), { base })
    expect(tree).toBe(base)
    expect(calls).toEqual([])
    expect(stats.files).toBe(5)
  })
})

describe('decodeTree refuses hostile records', () => {
  const H = (): Uint8Array => hashOf(Buffer.from('some chunk'))
  const f = (n: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
    ({ n, k: 'f', s: 5, x: false, m: 1, c: H(), z: [5], ...extra })

  /** A root record made of `entries` (as given: unsorted, broken...), plus blobs it names. */
  function hostile (rec: unknown, more: Blobs = new Map()): { root: Hash, get: (h: Hash) => Promise<Uint8Array> } {
    const bytes = rec instanceof Uint8Array ? rec : encode(rec)
    const root = hashOf(bytes)
    const blobs = new Map(more)
    blobs.set(hexOf(root), bytes)
    return { root, get: getter(blobs) }
  }

  async function refused (rec: unknown, pattern: RegExp, more?: Blobs): Promise<void> {
    const { root, get } = hostile(rec, more)
    const err = await decodeTree(root, get).then(() => undefined, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_BAD_MESSAGE' })
    expect((err as Error).message).toMatch(pattern)
  }

  it('accepts the well-formed baseline', async () => {
    const { root, get } = hostile({ v: 1, e: [f('a'), f('b')] })
    await expect(decodeTree(root, get)).resolves.toMatchObject({ stats: { files: 2 } })
  })

  it('refuses a blob that does not match its hash', async () => {
    const good = encode({ v: 1, e: [f('a')] })
    const evil = encode({ v: 1, e: [f('b')] })
    await expect(decodeTree(hashOf(good), async () => evil)).rejects.toMatchObject({ code: 'ERR_CHUNK_HASH_MISMATCH' })
  })

  it.each([
    ['unsorted names', [f('b'), f('a')], /not sorted/],
    ['duplicate names', [f('a'), f('a')], /twice/],
    ['UTF-16 order instead of UTF-8', [f('😀'), f('\uffff')], /not sorted/],
    ['..', [f('..')], /'\.\.'/],
    ['.', [f('.')], /'\.'/],
    ['a separator', [f('a/b')], /separator/],
    ['a backslash', [f('a\\b')], /separator/],
    ['an empty name', [f('')], /empty/],
    ['a NUL', [f('a\0')], /NUL/],
    ['a long name', [f('x'.repeat(256))], /longer than 255/],
    ['a name that is not a string', [f('a', { n: 5 })], /not a string/]
  ])('names: %s', async (_, e, pattern) => {
    await refused({ v: 1, e }, pattern)
  })

  it.each([
    ['size ≠ sum of chunks', f('a', { s: 6 }), /add up to 5 bytes, not the size 6/],
    ['a chunk past CHUNK_MAX_BYTES', f('a', { s: CHUNK_MAX_BYTES + 1, z: [CHUNK_MAX_BYTES + 1] }), /chunk 0 size/],
    ['a chunk of 0 bytes', f('a', { s: 0, z: [0] }), /chunk 0 size/],
    ['hashes not matching sizes', f('a', { c: new Uint8Array(31) }), /do not match/],
    ['size as a string', f('a', { s: '5' }), /size/],
    ['a negative size', f('a', { s: -1 }), /size/],
    ['a fractional size', f('a', { s: 1.5 }), /size/],
    ['a size past MAX_FILE_BYTES', f('a', { s: 2 ** 45 }), /size/],
    ['exec as a number', f('a', { x: 1 }), /exec/],
    ['a fractional mtime', f('a', { m: 1.5 }), /mtime/],
    ['an mtime as a string', f('a', { m: '1' }), /mtime/],
    ['an unknown kind', f('a', { k: 'p' }), /kind/],
    ['an extra field', f('a', { q: 1 }), /fields/],
    ['a missing field', { n: 'a', k: 'f', s: 5, m: 1, c: H(), z: [5] }, /fields/],
    ['sizes not a list', f('a', { z: 5 }), /not a list/],
    ['a dir hash of 31 bytes', { n: 'a', k: 'd', h: new Uint8Array(31) }, /32-byte/],
    ['an empty link target', { n: 'a', k: 'l', t: '' }, /link target/],
    ['a link target with NUL', { n: 'a', k: 'l', t: 'a\0' }, /NUL/],
    ['a link target too long', { n: 'a', k: 'l', t: 'x'.repeat(MAX_LINK_TARGET_BYTES + 1) }, /longer/],
    ['a link target not a string', { n: 'a', k: 'l', t: 5 }, /link target/],
    ['an entry that is a list', ['a', 'f'], /not a string|not a map/],
    ['chunks listed apart though few', { n: 'a', k: 'f', s: 5, x: false, m: 1, L: H() }, /too small/],
    ['L not a list of hashes', { n: 'a', k: 'f', s: 5, x: false, m: 1, L: new Uint8Array(33) }, /32-byte/],
    ['more chunk lists than the size allows', { n: 'a', k: 'f', s: 70_000, x: false, m: 1, L: new Uint8Array(3 * 32) }, /too many/]
  ])('entries: %s', async (_, entry, pattern) => {
    await refused({ v: 1, e: [entry] }, pattern)
  })

  it('refuses an L form holding INLINE_CHUNKS or fewer chunks', async () => {
    const list = encode({ v: 1, ...packed(fakeChunks(10)) })
    const more: Blobs = new Map([[hexOf(hashOf(list)), list]])
    await refused({ v: 1, e: [{ n: 'a', k: 'f', s: 10_000, x: false, m: 1, L: hashOf(list) }] }, /must be inline/, more)
  })

  it('refuses a chunk list that is not full but not last', async () => {
    const l1 = encode({ v: 1, ...packed(fakeChunks(10)) })
    const l2 = encode({ v: 1, ...packed(fakeChunks(INLINE_CHUNKS)) })
    const more: Blobs = new Map([[hexOf(hashOf(l1)), l1], [hexOf(hashOf(l2)), l2]])
    const L = Buffer.concat([hashOf(l1), hashOf(l2)])
    await refused({ v: 1, e: [{ n: 'a', k: 'f', s: (10 + INLINE_CHUNKS) * 1000, x: false, m: 1, L }] }, /chunk list 0 has 10/, more)
  })

  it.each([
    ['another version', { v: 2, e: [] }, /version/],
    ['entries not a list', { v: 1, e: {} }, /not a list/],
    ['a record that is a list', [1, []], /not a map/],
    ['an extra field', { v: 1, e: [], x: 1 }, /fields/],
    ['a record that is a number', 7, /not a map/]
  ])('records: %s', async (_, rec, pattern) => {
    await refused(rec, pattern)
  })

  it('refuses CBOR that is not canonical', async () => {
    // keys in the wrong order
    const unsorted = encode({ v: 1, e: [f('a')] }, { mapSorter: (a: any, b: any) => (a[0].value < b[0].value ? 1 : -1) })
    await refused(unsorted, /canonical/)
    // an integer not in its shortest form: {e: [], v: 0x18 0x01}
    await refused(Uint8Array.from([0xa2, 0x61, 0x65, 0x80, 0x61, 0x76, 0x18, 0x01]), /CBOR/)
    // trailing bytes
    await refused(Uint8Array.from([...encode({ v: 1, e: [] }), 0x00]), /CBOR/)
    // not CBOR at all
    await refused(Uint8Array.from([0xff, 0xff]), /CBOR/)
    // an integer written as a float ({e: [], v: 1.0}, half precision): it decodes to 1 all the same
    await refused(Uint8Array.from([0xa2, 0x61, 0x65, 0x80, 0x61, 0x76, 0xf9, 0x3c, 0x00]), /canonical/)
    // a mtime of 0 written as the float -0.0 (cborg writes 0 as an integer)
    const zero = Buffer.from(encode({ v: 1, e: [f('a', { m: 0 })] }))
    const at = zero.indexOf(Buffer.from([0x61, 0x6d, 0x00])) + 2
    await refused(Buffer.concat([zero.subarray(0, at), Uint8Array.from([0xf9, 0x00, 0x00]), zero.subarray(at + 1)]), /canonical/)
  })

  it('checks canonical form with the project\'s writer, which writes what cborg writes for any value a record holds', () => {
    const values: unknown[] = [
      0, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER, -1, -24, -25, -256, -257, -(2 ** 32), Number.MIN_SAFE_INTEGER,
      true, false, '', 'a', 'é', '𝄞 clef', 'x'.repeat(300), new Uint8Array(0), Uint8Array.from([1, 2, 3]), new Uint8Array(70_000),
      [], [1, [2, [3]]], {}, { b: 1, a: 2, aa: 3, é: 4, z: { y: [true] } }, { v: 1, e: [f('a'), f('b', { x: true })] }
    ]
    const w = new CborWriter()
    for (const v of values) {
      expect(w.reset().value(v), JSON.stringify(v)).toBe(true)
      expect(w.equals(encode(v)), JSON.stringify(v)).toBe(true)
      expect(Buffer.from(w.bytes()).equals(Buffer.from(encode(v)))).toBe(true)
    }
    // outside what a record holds: refused, whatever cborg would make of it
    for (const v of [1.5, -0, NaN, null, undefined, 2n ** 70n, new Map(), new Date(0), [1, 0.5], { a: null }]) {
      expect(w.reset().value(v)).toBe(false)
    }
    expect(w.reset().value({ a: 1 }) && w.equals(encode({ a: 2 }))).toBe(false)
  })

  it('refuses a blob past MAX_BLOB_BYTES', async () => {
    await refused(new Uint8Array(MAX_BLOB_BYTES + 1), /past the limit/)
  })

  it('refuses what is not bytes from the fetcher', async () => {
    const h = hashOf(Buffer.from('x'))
    await expect(decodeTree(h, async () => 'x' as unknown as Uint8Array)).rejects.toMatchObject({ code: 'ERR_BAD_MESSAGE' })
    await expect(decodeTree(new Uint8Array(3), async () => new Uint8Array(0))).rejects.toMatchObject({ code: 'ERR_BAD_MESSAGE' })
  })

  it('passes on a fetcher failure as it is', async () => {
    const h = hashOf(Buffer.from('x'))
    await expect(decodeTree(h, async () => { throw new Error('peer gone') })).rejects.toThrow('peer gone')
  })

  it(`refuses more than ${MAX_ENTRIES_PER_DIR} entries in a directory`, async () => {
    const e = Array.from({ length: MAX_ENTRIES_PER_DIR + 1 }, (_, i) => ({ n: `l${String(i).padStart(6, '0')}`, k: 'l', t: 'x' }))
    await refused({ v: 1, e }, /entries, past the limit/)
  })

  it(`refuses a tree deeper than ${MAX_TREE_DEPTH} levels, accepts one as deep`, async () => {
    const chain = (levels: number, leaf: unknown[]): { root: Hash, blobs: Blobs } => {
      const blobs: Blobs = new Map()
      let bytes = encode({ v: 1, e: leaf })
      for (let i = 0; i < levels; i++) {
        blobs.set(hexOf(hashOf(bytes)), bytes)
        bytes = encode({ v: 1, e: [{ n: 'd', k: 'd', h: hashOf(bytes) }] })
      }
      blobs.set(hexOf(hashOf(bytes)), bytes)
      return { root: hashOf(bytes), blobs }
    }
    const ok = chain(MAX_TREE_DEPTH - 1, [f('a')]) // the file is at depth MAX_TREE_DEPTH
    await expect(decodeTree(ok.root, getter(ok.blobs))).resolves.toMatchObject({ stats: { files: 1 } })
    const deep = chain(MAX_TREE_DEPTH, [f('a')])
    await expect(decodeTree(deep.root, getter(deep.blobs))).rejects.toThrow(/deep/)
  })

  it(`refuses a small tree that expands past ${MAX_TREE_FILES} entries, without expanding it`, async () => {
    // 50,000 directories of 41 links each: two blobs, 2,100,000 entries once written out
    const leaf = encode({ v: 1, e: Array.from({ length: 41 }, (_, i) => ({ n: `l${String(i).padStart(2, '0')}`, k: 'l', t: 'x' })) })
    const e = Array.from({ length: 50_000 }, (_, i) => ({ n: `d${String(i).padStart(6, '0')}`, k: 'd', h: hashOf(leaf) }))
    const root = encode({ v: 1, e })
    const calls: string[] = []
    const get = getter(new Map([[hexOf(hashOf(leaf)), leaf], [hexOf(hashOf(root)), root]]), calls)
    const err = await decodeTree(hashOf(root), get).then(() => undefined, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_BAD_MESSAGE' })
    expect((err as Error).message).toMatch(/entries, past the limit of 2000000/)
    // Not expanded: the shared leaf was fetched and parsed once, not once per directory naming it.
    expect(calls.sort()).toEqual([hexOf(hashOf(leaf)), hexOf(hashOf(root))].sort())
  })

  it('stops at an abort', async () => {
    const { rootHash, blobs } = encodeTree(sample())
    const ac = new AbortController()
    ac.abort()
    await expect(decodeTree(rootHash, getter(blobs), { signal: ac.signal })).rejects.toThrow()
  })

  it('names blobs by SHA-256', () => {
    expect(hashOf(new Uint8Array(0)).byteLength).toBe(HASH_BYTES)
    expect(hexOf(hashOf(Buffer.from('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })
})
