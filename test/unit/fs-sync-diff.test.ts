import { describe, expect, it } from 'vitest'
import { diffTrees, fileEquals, nodeEquals, treeEquals } from '../../src/fs-sync/diff.js'
import type { Change, DirNode, FileNode } from '../../src/fs-sync/types.js'
import { buildTree, ChunkMap, file, fileNode, link } from '../helpers/fs-sync-trees.js'

const show = (changes: Change[]): string[] => changes.map((c) => `${c.kind} ${c.path}`)

describe('diffTrees', () => {
  it('lists everything as added against no base, parents first', () => {
    const next = buildTree({ b: 'x', a: { z: 'y', sub: {} }, l: link('b') })
    expect(show(diffTrees(undefined, next))).toEqual(['add a', 'add a/sub', 'add a/z', 'add b', 'add l'])
  })

  it('finds nothing between equal trees', () => {
    const spec = { a: 'x', d: { e: 'y' }, l: link('a') }
    expect(diffTrees(buildTree(spec), buildTree(spec))).toEqual([])
  })

  it('reports add, modify and delete with the nodes', () => {
    const base = buildTree({ same: 's', changed: 'old', gone: 'g', d: { keep: 'k', drop: 'x' } })
    const next = buildTree({ same: 's', changed: 'new', added: 'a', d: { keep: 'k', more: 'm' } })
    const changes = diffTrees(base, next)
    expect(show(changes)).toEqual(['add added', 'modify changed', 'delete d/drop', 'add d/more', 'delete gone'])
    const modify = changes.find((c) => c.kind === 'modify')!
    expect((modify.node as FileNode).size).toBe(3)
    expect(modify.old).toBe(base.entries.get('changed'))
    expect(changes.find((c) => c.kind === 'delete')!.node).toBeUndefined()
  })

  it('counts the executable bit and link targets as changes, not mtimes alone', () => {
    const base = buildTree({ run: file('#!/bin/sh', { exec: false }), l: link('a'), t: file('same', { mtimeMs: 1 }) })
    const next = buildTree({ run: file('#!/bin/sh', { exec: true }), l: link('b'), t: file('same', { mtimeMs: 2 }) })
    expect(show(diffTrees(base, next))).toEqual(['modify l', 'modify run'])
    expect(show(diffTrees(base, next, { mtime: true }))).toEqual(['modify l', 'modify run', 'modify t'])
  })

  it('turns a change of kind into delete then add, children before a deleted parent', () => {
    const base = buildTree({ p: { x: '1', y: { z: '2' } }, f: 'file', l: link('t') })
    const next = buildTree({ p: 'now a file', f: { inside: '3' }, l: 'a file' })
    expect(show(diffTrees(base, next))).toEqual([
      'delete f', 'add f', 'add f/inside',
      'delete l', 'add l',
      'delete p/x', 'delete p/y/z', 'delete p/y', 'delete p', 'add p'
    ])
  })

  it('orders names by UTF-8 bytes', () => {
    const next = buildTree({ '\uffff': '1', '😀': '2', B: '3', a: '4' })
    expect(show(diffTrees(undefined, next))).toEqual(['add B', 'add a', 'add \uffff', 'add 😀'])
  })

  it('skips subtrees whose hashes are equal without looking inside', () => {
    const base = buildTree({ big: { a: '1', b: { c: '2' } }, top: 'x' })
    const next = buildTree({ big: { a: '1', b: { c: '2' } }, top: 'y' })
    // Same hash, different content: only a diff that trusts the hash reports nothing inside.
    const big = next.entries.get('big') as DirNode
    big.entries.set('planted', fileNode('p', new ChunkMap()))
    expect(show(diffTrees(base, next))).toEqual(['modify top'])
  })

  it('compares entry by entry when hashes are not set', () => {
    const unhashed = (spec: Record<string, string>): DirNode => {
      const t = buildTree(spec)
      t.hash = new Uint8Array(0)
      return t
    }
    expect(show(diffTrees(unhashed({ a: '1' }), unhashed({ a: '2' })))).toEqual(['modify a'])
    expect(treeEquals(unhashed({ a: '1' }), unhashed({ a: '1' }))).toBe(true)
    expect(treeEquals(unhashed({ a: '1' }), unhashed({ a: '2' }))).toBe(false)
  })
})

describe('equality', () => {
  it('fileEquals compares content and exec, not mtime', () => {
    const chunks = new ChunkMap()
    const a = fileNode('hello', chunks, { mtimeMs: 1 })
    expect(fileEquals(a, fileNode('hello', chunks, { mtimeMs: 2 }))).toBe(true)
    expect(fileEquals(a, fileNode('hellO', chunks))).toBe(false)
    expect(fileEquals(a, fileNode('hello', chunks, { exec: true }))).toBe(false)
    expect(fileEquals(a, fileNode('hello!', chunks))).toBe(false)
  })

  it('nodeEquals compares by kind', () => {
    const t = buildTree({ f: 'x', l: link('x'), d: { a: '1' } })
    const u = buildTree({ f: 'x', l: link('y'), d: { a: '1' } })
    expect(nodeEquals(t.entries.get('f')!, u.entries.get('f')!)).toBe(true)
    expect(nodeEquals(t.entries.get('l')!, u.entries.get('l')!)).toBe(false)
    expect(nodeEquals(t.entries.get('d')!, u.entries.get('d')!)).toBe(true)
    expect(nodeEquals(t.entries.get('f')!, t.entries.get('d')!)).toBe(false)
    expect(treeEquals(t, u)).toBe(false)
  })
})
