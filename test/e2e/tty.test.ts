/**
 * `vrun` from a terminal: the command gets a pseudo-terminal on the executor, so a remote
 * shell has a prompt, Ctrl-C and the window size.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import pty from '@lydell/node-pty'
import { startGrid, stopAll, waitFor, BIN, heldInTerminal, type AgentProc } from '../helpers/procs.js'

let a: AgentProc
let b: AgentProc

beforeAll(async () => { [a, b] = await startGrid(2) }, 60_000)
afterAll(async () => { await stopAll() })

/** `vrun ARGS` under a terminal; `hold`: held 2 s past vrun's exit, for a test that reads its last output (heldInTerminal). */
function vrunInTerminal (args: string[], hold = false): { term: pty.IPty, output: () => string, exit: Promise<number> } {
  const [file, argv] = hold ? heldInTerminal('vrun', args) : [process.execPath, [BIN.vrun, ...args]]
  const term = pty.spawn(file, argv, {
    cols: 100, rows: 30, cwd: a.workspace, name: 'xterm-256color',
    env: { ...process.env, VGRID_HOME: a.home } as Record<string, string>
  })
  let out = ''
  term.onData((d) => { out += d })
  const exit = new Promise<number>((resolve) => term.onExit((e) => { resolve(e.exitCode) }))
  return { term, output: () => out, exit }
}

describe('vrun in a terminal', () => {
  it('gives the command a terminal of the same size', async () => {
    const { output, exit } = vrunInTerminal(['--on', b.peer, 'sh', '-c', 'tty; stty size'], true)
    await waitFor(() => /30 100/.test(output()), 'the size to be printed', 20_000)
    expect(await exit).toBe(0)
    // bwrap shows the guest its terminal as /dev/console
    expect(output()).toMatch(/\/dev\/(pts\/\d+|console)/)
  })

  it('runs an interactive remote shell with Ctrl-C and resizing', async () => {
    const { term, output, exit } = vrunInTerminal(['--on', b.peer, 'sh', '-i'])
    await waitFor(() => /[$#] $/.test(output()), 'a prompt', 10_000)
    term.write('echo $((6*7))\r')
    await waitFor(() => output().includes('42'), 'the shell to answer')
    // Interrupt only once the shell runs the list: its first command has printed.
    term.write('echo sleeping; sleep 30\r')
    await waitFor(() => /(^|\n)sleeping\r?\n/.test(output()), 'the shell to start sleeping')
    term.write('\x03')
    // Type on once the shell is back at its prompt, as a user would: input typed while the
    // interrupt is still being handled may be discarded with the interrupted line.
    await waitFor(() => /[$#] $/.test(output().split(/(^|\n)sleeping\r?\n/).at(-1)!), 'a prompt after Ctrl-C', 10_000)
    term.write('echo after-interrupt\r')
    await waitFor(() => /after-interrupt\r?\n/.test(output().split('echo after-interrupt').slice(1).join('')), 'the shell to come back after Ctrl-C', 10_000)
    term.resize(120, 40)
    // The resize travels as a signal to vrun, then a message; a command typed at once may run
    // before it lands, so ask again until the remote terminal has the new size.
    let asked = 0
    await waitFor(() => {
      if (output().includes('40 120')) return true
      if (asked++ % 10 === 0) term.write('stty size\r')
      return false
    }, 'the new window size', 10_000)
    term.write('exit 3\r')
    expect(await exit).toBe(3)
  })

  it('does not use a terminal with --tty no', async () => {
    const { output, exit } = vrunInTerminal(['--tty', 'no', '--on', b.peer, 'sh', '-c', 'tty || true'], true)
    await waitFor(() => /not a tty/.test(output()), 'tty to say it has none', 20_000)
    await exit
  })

  it('ends killed by SIGHUP when its terminal goes away, after the command got SIGHUP and its files came back', async () => {
    for (const tty of ['yes', 'no']) {
      const file = `hup-${tty}.txt`
      const { term, output } = vrunInTerminal(['--tty', tty, '--on', b.peer, 'sh', '-c', `trap 'echo hup > ${file}; exit 0' HUP; echo ready; while :; do sleep 0.1; done`])
      const ended = new Promise<{ exitCode: number, signal?: number }>((resolve) => term.onExit(resolve))
      await waitFor(() => output().includes('ready'), 'the command to start', 20_000)
      // the terminal window closes (UnixTerminal.destroy: missing from node-pty's IPty type)
      ;(term as pty.IPty & { destroy: () => void }).destroy()
      // not a crash (Node 20 dies of SIGSEGV restoring a terminal that is gone)
      expect((await ended).signal, tty).toBe(1)
      expect(fs.readFileSync(path.join(a.workspace, file), 'utf8')).toBe('hup\n')
    }
  }, 60_000)
})
