/**
 * Where `vgrid agent` takes its join token from, other than its command line (which every
 * user of the machine reads in `ps`): `--join -` reads it from stdin, and VGRID_JOIN_TOKEN
 * is dropped from the environment once read, so no command the agent starts inherits it.
 * `--join-file` and the variable are read with the rest of the configuration (agent/config.ts).
 */
import type { Readable } from 'node:stream'
import type { AgentFlags } from '../agent/config.js'
import { UsageError } from './usage-error.js'

/** More than any token (4 KiB at most): what follows is not read. */
const MAX_STDIN_TOKEN_BYTES = 8192

const USAGE = 'usage: vgrid agent [options]; see vgrid agent --help'

/** The flags with the token of `--join -` read from `stdin` in place of the dash. */
export async function readJoinFromStdin (flags: AgentFlags, stdin: Readable & { isTTY?: boolean }, prompt: (s: string) => void): Promise<AgentFlags> {
  if (flags.join !== '-') return flags
  if (flags.joinFile !== undefined) throw new UsageError('--join and --join-file both give a join token', 'give one of them', { usage: USAGE })
  if (stdin.isTTY === true) prompt('Paste the join token (`vgrid join-token` on a member prints it), then Enter: ')
  const token = await firstLine(stdin)
  if (token === '') {
    throw new UsageError('--join -: no join token on stdin', 'pipe it in: `vgrid join-token | ssh HOST vgrid agent --join -`, or use --join-file FILE', { usage: USAGE })
  }
  return { ...flags, join: token }
}

/** The first line of `stream` (up to its end, or MAX_STDIN_TOKEN_BYTES), trimmed; the stream is then left alone. */
async function firstLine (stream: Readable): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    let text = ''
    const done = (): void => {
      stream.off('data', onData)
      stream.off('end', done)
      stream.off('error', onError)
      stream.pause()
      resolve(text.split('\n')[0]!.trim())
    }
    const onData = (d: Buffer | string): void => {
      text += d.toString()
      if (text.includes('\n') || text.length >= MAX_STDIN_TOKEN_BYTES) done()
    }
    const onError = (err: Error): void => { stream.off('data', onData); reject(err) }
    stream.on('data', onData)
    stream.once('end', done)
    stream.once('error', onError)
  })
}
