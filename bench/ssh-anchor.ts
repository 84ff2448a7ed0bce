/**
 * The anchor that issue 19's figures are ratios to: what a lab does by hand, `rsync -a -e ssh`
 * and `ssh HOST true`, against an sshd of the bench's own on 127.0.0.1 (a port of its own, a
 * throwaway host key and user key, an authorized-keys file in its temporary directory: the
 * machine's own ssh setup is not touched). Installs nothing: where sshd, ssh or rsync is
 * missing it says what to install.
 */
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { tempDir } from '../test/helpers/procs.js'
import { waitFor } from '../test/helpers/wait.js'

const SSHD = ['/usr/sbin/sshd', '/usr/local/sbin/sshd'].find((p) => fs.existsSync(p))

export interface SshAnchor {
  /** `ssh` with the options that reach the bench's sshd: give it to rsync as `-e`, or run it. */
  ssh: string[]
  /** Where the sshd listens, for `HOST:PATH` and `ssh HOST`. */
  host: string
  stop: () => Promise<void>
}

/** What is missing for the anchor, in words, or undefined when all is here. */
export function anchorMissing (): string | undefined {
  const missing = [
    SSHD === undefined ? 'sshd (openssh-server)' : undefined,
    spawnSync('sh', ['-c', 'command -v ssh']).status !== 0 ? 'ssh (openssh-client)' : undefined,
    spawnSync('sh', ['-c', 'command -v rsync']).status !== 0 ? 'rsync' : undefined,
    spawnSync('sh', ['-c', 'command -v ssh-keygen']).status !== 0 ? 'ssh-keygen (openssh-client)' : undefined
  ].filter((m) => m !== undefined)
  return missing.length === 0 ? undefined : `${missing.join(', ')} not installed: sudo apt-get install openssh-server openssh-client rsync`
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => { resolve(port) })
    })
  })
}

export async function startSshAnchor (): Promise<SshAnchor> {
  const missing = anchorMissing()
  if (missing !== undefined) throw new Error(`the rsync-over-ssh anchor: ${missing}`)
  const dir = tempDir('vgrid-bench-sshd-')
  fs.chmodSync(dir, 0o700)
  for (const k of ['host', 'user']) {
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, k)])
    if (r.status !== 0) throw new Error(`ssh-keygen: ${r.stderr.toString()}`)
  }
  fs.copyFileSync(path.join(dir, 'user.pub'), path.join(dir, 'authorized_keys'))
  const port = await freePort()
  fs.writeFileSync(path.join(dir, 'sshd_config'), [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${path.join(dir, 'host')}`,
    `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    'StrictModes no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'UsePAM no',
    ''
  ].join('\n'))
  // privilege separation needs its directory (made by the package's service, which may not run)
  if (process.getuid?.() === 0) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 })
  const sshd: ChildProcess = spawn(SSHD!, ['-D', '-e', '-f', path.join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  sshd.stderr!.on('data', (d: Buffer) => { log += d.toString() })
  const ssh = ['ssh', '-p', String(port), '-i', path.join(dir, 'user'), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes']
  const stop = async (): Promise<void> => {
    if (sshd.exitCode === null) {
      const gone = new Promise((resolve) => sshd.once('exit', resolve))
      sshd.kill('SIGTERM')
      await gone
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
  try {
    await waitFor(() => {
      if (sshd.exitCode !== null) throw new Error(`sshd exited: ${log}`)
      return spawnSync(ssh[0]!, [...ssh.slice(1), '127.0.0.1', 'true']).status === 0
    }, 'the bench\'s sshd to let us in', 20_000, 100)
  } catch (err) {
    await stop()
    throw err
  }
  return { ssh, host: '127.0.0.1', stop }
}

/** `rsync -a -e ssh FROM/ HOST:TO/`: its time in ms. */
export function rsyncOverSshMs (anchor: SshAnchor, from: string, to: string): number {
  const t0 = performance.now()
  const r = spawnSync('rsync', ['-a', '-e', anchor.ssh.join(' '), `${from}/`, `${anchor.host}:${to}/`])
  const ms = performance.now() - t0
  if (r.status !== 0) throw new Error(`rsync -e ssh failed (${r.status}): ${r.stderr.toString()}`)
  return ms
}

/** A fresh `ssh HOST true` (a new connection, key exchange and all): its time in ms. */
export function sshTrueMs (anchor: SshAnchor): number {
  const t0 = performance.now()
  const r = spawnSync(anchor.ssh[0]!, [...anchor.ssh.slice(1), anchor.host, 'true'])
  const ms = performance.now() - t0
  if (r.status !== 0) throw new Error(`ssh true failed (${r.status}): ${r.stderr.toString()}`)
  return ms
}
