/**
 * Peer ids as text, checked without libp2p (the CLI imports this): base58btc, as libp2p
 * prints them (`12D3KooW…` for Ed25519 keys, `Qm…` for RSA). Shape only: the grid parses
 * them fully where it acts on them.
 *
 * Shown to people: every Ed25519 peer id starts with the same `12D3KooW`, so members differ
 * by their last characters only. We show the end, `…Sn62Xk`, the shortest that no other
 * member of the grid shares (at least MIN_PEER_SUFFIX_CHARS), and take a unique suffix or
 * prefix wherever a peer id is typed.
 */

const PEER_ID_RE = /^[1-9A-HJ-NP-Za-km-z]{46,100}$/

/** How many members an owner may name in `--accept-from`. */
export const MAX_ACCEPT_FROM = 256

export function looksLikePeerId (s: string): boolean {
  return PEER_ID_RE.test(s)
}

/** 6 base58 characters: 3.8e10 values, no collision to expect among a lab's machines. */
export const MIN_PEER_SUFFIX_CHARS = 6
/** What marks a shown id as the end of one. */
export const PEER_SUFFIX_MARK = '…'

/** `…Sn62Xk`: the end of `peer` that none of `among` (the grid's members) ends with. */
export function shortPeerId (peer: string, among: Iterable<string> = []): string {
  const others = [...among].filter((p) => p !== peer)
  let n = Math.min(MIN_PEER_SUFFIX_CHARS, peer.length)
  while (n < peer.length && others.some((o) => o.endsWith(peer.slice(-n)))) n++
  return `${PEER_SUFFIX_MARK}${peer.slice(-n)}`
}

/** A function that shortens each of `peers` against all the others. */
export function peerNamer (peers: Iterable<string>): (peer: string) => string {
  const all = [...new Set(peers)]
  return (peer) => shortPeerId(peer, all)
}

/**
 * Whether `typed` names `peer` by a part of its id: a prefix, or a suffix as shown (with or
 * without the leading `…` or `...`). At least 4 characters.
 */
export function matchesPeerPart (peer: string, typed: string): boolean {
  const suffix = typed.replace(/^(…|\.\.\.)/, '')
  if (suffix.length < 4) return false
  if (suffix !== typed) return peer.endsWith(suffix)
  return peer.startsWith(typed) || peer.endsWith(typed)
}
