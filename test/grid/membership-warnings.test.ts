/**
 * Issue 14: a member that vanishes or falls silent is a warning in the agent's log, never a
 * silent disappearance; and a hello lists the members the sender knows, so a newcomer dials
 * them at once. Hostile member lists are refused like any other bad message.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { encode } from 'cborg'
import { afterEach, expect, it } from 'vitest'
import { HELLO_PROTOCOL, MAX_HELLO_MEMBERS } from '../../src/grid/constants.js'
import { streamChannel } from '../../src/grid/stream-channel.js'
import { ADVERT_TOPIC } from '../../src/grid/index.js'
import { waitFor } from '../helpers/wait.js'
import { fakeDescription, Harness, members } from './harness.js'

const h = new Harness()
afterEach(async () => { await h.cleanup() })

type RawNode = Awaited<ReturnType<Harness['raw']>>

function rawAd (raw: RawNode, seq: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { v: 1, peer: raw.peerId.toString(), seq, startedAt: Date.now(), addrs: [], version: '1.0.0', ...fakeDescription('raw'), ...over }
}

/** Sends a hello of one or two frames from a raw node; resolves once the victim ended the stream. */
async function hello (raw: RawNode, to: string, frames: unknown[]): Promise<void> {
  const stream = await raw.dialProtocol(multiaddr(to), HELLO_PROTOCOL)
  const ch = streamChannel(stream, { maxFrameBytes: 4 * 1024 * 1024, log: raw.logger.forComponent('test'), remotePeer: 'victim' })
  for (const f of frames) await ch.send(f)
  await ch.close().catch(() => {})
  await ch.recv().catch(() => {})
}

it('a member whose connection closes without a goodbye, or that falls silent, is a warning', async () => {
  const warnings: string[] = []
  const victim = await h.start({ onWarning: (m) => { warnings.push(m) } })

  // one that vanishes: a raw member announces itself, then stops without a goodbye
  const gone = await h.raw()
  await gone.dial(multiaddr(victim.addrs()[0]))
  await hello(gone, victim.addrs()[0], [rawAd(gone, 1)])
  await waitFor(() => members(victim).includes(gone.peerId.toString()), 'the raw member in the view')
  await gone.stop()
  await waitFor(() => warnings.some((w) => w.includes(gone.peerId.toString().slice(-8)) && w.includes('closed without a goodbye')), 'a warning that the member vanished', 10_000)
  expect(members(victim)).not.toContain(gone.peerId.toString())

  // one that stays connected but stops advertising: warned once silent, then dropped
  const mute = await h.raw()
  mute.services.pubsub.subscribe(ADVERT_TOPIC)
  await mute.dial(multiaddr(victim.addrs()[0]))
  await hello(mute, victim.addrs()[0], [rawAd(mute, 1, { every: 1000 })])
  const tag = mute.peerId.toString().slice(-8)
  await waitFor(() => warnings.some((w) => w.includes(tag) && w.includes('although connected')), 'a warning that the member is silent', 20_000, 200)
  await waitFor(() => warnings.some((w) => w.includes(tag) && w.includes('dropped from the view')), 'a warning that the silent member was dropped', 25_000, 200)
  expect(members(victim)).toEqual([victim.peerId])
  // one line per episode, not one a second
  expect(warnings.filter((w) => w.includes(tag) && w.includes('although connected'))).toHaveLength(1)
}, 60_000)

it('a hello lists the members its sender knows, and the receiver dials them', async () => {
  // two members of one swarm that do not know each other
  const victim = await h.start()
  const other = await h.start()
  expect(victim.connectedPeers()).toEqual([])
  const raw = await h.raw()
  await hello(raw, victim.addrs()[0], [rawAd(raw, 1), { members: [{ peer: other.peerId, addrs: other.addrs() }] }])
  await waitFor(() => victim.connectedPeers().includes(other.peerId) && members(victim).includes(other.peerId), 'the victim connected to the member the hello listed', 10_000)
})

it('hostile member lists in a hello are refused; the victim keeps working', async () => {
  const victim = await h.start()
  const raw = await h.raw()
  const id = raw.peerId.toString()
  const lists: unknown[] = [
    'not a map',
    { members: 'not a list' },
    { members: [{ peer: 'not a peer id', addrs: [] }] },
    { members: [{ peer: id, addrs: 'x' }] },
    { members: [{ peer: id, addrs: Array.from({ length: 100 }, () => '/ip4/127.0.0.1/tcp/1') }] },
    { members: Array.from({ length: MAX_HELLO_MEMBERS + 1 }, () => ({ peer: id, addrs: [] })) },
    { members: [{ peer: id, addrs: ['x'.repeat(100_000)] }] }
  ]
  for (const list of lists) await hello(raw, victim.addrs()[0], [rawAd(raw, 1), list])
  // raw CBOR garbage as the second frame too
  await hello(raw, victim.addrs()[0], [rawAd(raw, 2), encode(new Map([[1, 2]]))])
  // the victim still takes a good hello
  await hello(raw, victim.addrs()[0], [rawAd(raw, 3, { version: '2.0.0' })])
  const seen = await waitFor(() => victim.view().find((p) => p.peer === id && p.version === '2.0.0'), 'the good hello applied')
  expect(seen.seq).toBe(3)
  expect(members(victim)).toEqual([victim.peerId, id].sort())
})
