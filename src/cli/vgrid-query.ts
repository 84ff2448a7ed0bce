/**
 * `vgrid peers`, `vgrid status` and `vgrid join-token`: one request to the local agent each,
 * printed as a table, as text or as JSON. Loaded only when one of them runs.
 */
import { vgridHome } from '../agent/config.js'
import { request } from '../agent/control/client.js'
import { peersJson, renderPeersTable, renderStatus, statusJson } from './output.js'

export type Query = { kind: 'peers', json: boolean } | { kind: 'status', json: boolean } | { kind: 'join-token' }

/** Resolves with the exit status; agent failures are thrown for the caller to print. */
export async function runQuery (q: Query, env: NodeJS.ProcessEnv, out: NodeJS.WritableStream): Promise<number> {
  const home = vgridHome(env)
  switch (q.kind) {
    case 'peers': {
      const { peers } = await request(home, { t: 'peers' })
      out.write(q.json ? peersJson(peers) : renderPeersTable(peers))
      return 0
    }
    case 'status': {
      const { status } = await request(home, { t: 'status' })
      out.write(q.json ? statusJson(status) : renderStatus(status))
      return 0
    }
    case 'join-token': {
      const { token } = await request(home, { t: 'join-token' })
      out.write(`${token}\n`)
      return 0
    }
  }
}
