/**
 * Peer ids as text, checked without libp2p (the CLI imports this): base58btc, as libp2p
 * prints them (`12D3KooW…` for Ed25519 keys, `Qm…` for RSA). Shape only: the grid parses
 * them fully where it acts on them.
 */

const PEER_ID_RE = /^[1-9A-HJ-NP-Za-km-z]{46,100}$/

/** How many members an owner may name in `--accept-from`. */
export const MAX_ACCEPT_FROM = 256

export function looksLikePeerId (s: string): boolean {
  return PEER_ID_RE.test(s)
}
