/**
 * Ending a guest's process group. The group of a sandboxed guest is led by bubblewrap's
 * monitor, which is spared the polite signal (it would take the namespace down with no grace
 * for the command). Here a script named `bwrap` stands in for it: its comm is what the agent
 * looks at.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it, expect } from 'vitest'
import { GroupTerminator } from '../../src/exec/process-group.js'
import { tempDir, waitFor } from '../helpers/procs.js'

/** A leader named `bwrap` that starts its command only once `go` exists, as bwrap forks late. */
function fakeSandbox (dir: string): { pgid: number, status: string, go: string } {
  const status = path.join(dir, 'status')
  const go = path.join(dir, 'go')
  const leader = path.join(dir, 'bwrap')
  fs.writeFileSync(leader, [
    '#!/bin/sh',
    // the monitor ignores the polite signal, as the agent never sends it there
    `while [ ! -e '${go}' ]; do :; done`,
    `sh -c 'trap "exit 7" TERM; while :; do sleep 0.05; done'`,
    `echo $? > '${status}'`
  ].join('\n'), { mode: 0o755 })
  const child = spawn(leader, [], { detached: true, stdio: 'ignore' })
  child.unref()
  return { pgid: child.pid!, status, go }
}

describe('GroupTerminator', () => {
  it('sends the polite signal again when the sandbox had not started the command yet', async () => {
    const dir = tempDir()
    const box = fakeSandbox(dir)
    await waitFor(() => fs.existsSync(`/proc/${box.pgid}/comm`) && fs.readFileSync(`/proc/${box.pgid}/comm`, 'utf8').trim() === 'bwrap', 'the leader to run as bwrap')
    // The signal is sent while only the leader exists: it spares the leader, reaches nobody.
    const ended = new GroupTerminator(box.pgid).terminate('SIGTERM', 120_000)
    fs.writeFileSync(box.go, '')
    // The command, started after the first send, still gets SIGTERM (its trap exits 7, or it
    // dies of it, 143, if it came before the trap was set), not SIGKILL 120 s later.
    // (the shell creates the file empty, then writes the status: an empty one is not the end)
    const status = await waitFor(() => fs.existsSync(box.status) ? fs.readFileSync(box.status, 'utf8').trim() || undefined : undefined, 'the command to end', 30_000)
    expect(['7', '143']).toContain(status)
    await ended // the leader, its command done, exits: the group is gone
  })
})
