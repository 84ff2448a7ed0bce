/**
 * Members' addresses remembered in `$VGRID_HOME/peers.json`, so an agent restarted without
 * `--join` or `--peer` finds its grid again.
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import { KNOWN_PEERS_FILE, MAX_KNOWN_PEERS } from './constants.js'

export async function loadKnownPeers (home: string): Promise<string[]> {
  try {
    const data: unknown = JSON.parse(await fs.readFile(path.join(home, KNOWN_PEERS_FILE), 'utf8'))
    if (!Array.isArray(data)) return []
    return data.filter((a): a is string => typeof a === 'string' && a.startsWith('/') && a.length <= 512).slice(0, MAX_KNOWN_PEERS)
  } catch {
    return []
  }
}

export async function saveKnownPeers (home: string, addrs: string[]): Promise<void> {
  const file = path.join(home, KNOWN_PEERS_FILE)
  const tmp = `${file}.tmp`
  await fs.writeFile(tmp, JSON.stringify(addrs.slice(0, MAX_KNOWN_PEERS), null, 1) + '\n', { mode: 0o600 })
  await fs.rename(tmp, file)
}
