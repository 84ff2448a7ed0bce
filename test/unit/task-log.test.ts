/** A task's output log on real files: frames in order, followers, a log reopened after a restart. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { TaskLog, readFrames, type LogFrame } from '../../src/agent/tasks/log.js'

let dir: string
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vgrid-tasklog-')) })
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }) })

const ID = '00000000000000aa'
const text = (f: LogFrame): string => `${f.seq}:${f.fd}:${Buffer.from(f.data).toString()}`

describe('TaskLog', () => {
  it('gives a follower what is in the file, then each new frame once', async () => {
    const log = new TaskLog(dir, ID)
    log.append(1, Buffer.from('a'))
    await log.flushed()
    const got: string[] = []
    const stop = log.follow((f) => { got.push(text(f)) })
    log.append(2, Buffer.from('b'))
    await log.flushed()
    stop()
    log.append(1, Buffer.from('c'))
    await log.flushed()
    expect(got).toEqual(['0:1:a', '1:2:b'])
    expect(readFrames(log.file).map(text)).toEqual(['0:1:a', '1:2:b', '2:1:c'])
  })

  it('holds no follower set once every follower stopped, however many came and went', async () => {
    const log = new TaskLog(dir, ID)
    for (let i = 0; i < 100; i++) log.follow(() => {})()
    const a = log.follow(() => {})
    const b = log.follow(() => {})
    a()
    expect((log as unknown as { followers?: Set<unknown> }).followers?.size).toBe(1)
    b()
    expect((log as unknown as { followers?: Set<unknown> }).followers).toBeUndefined()
  })

  it('numbers on after a restart from what the file holds', async () => {
    const before = new TaskLog(dir, ID)
    before.append(1, Buffer.from('x'))
    before.append(1, Buffer.from('y'))
    await before.flushed()
    const after = TaskLog.open(dir, ID)
    const got: string[] = []
    after.follow((f) => { got.push(text(f)) })
    after.append(2, Buffer.from('z'))
    await after.flushed()
    expect(got).toEqual(['0:1:x', '1:1:y', '2:2:z'])
  })
})
