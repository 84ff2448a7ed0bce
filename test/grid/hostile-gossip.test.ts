/**
 * A member of the private network that misbehaves on the advertisement topic (or in a hello)
 * must not get bogus entries into anyone's view, nor stop the victim from working.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { decode, encode } from 'cborg'
import { HELLO_PROTOCOL } from '../../src/grid/constants.js'
import { streamChannel } from '../../src/grid/stream-channel.js'
import { afterEach, expect, it } from 'vitest'
import { ADVERT_TOPIC, MAX_ADVERT_BYTES } from '../../src/grid/index.js'
import { waitFor } from '../helpers/wait.js'
import { fakeDescription, Harness, members } from './harness.js'

const h = new Harness()
afterEach(async () => { await h.cleanup() })

type Member = Awaited<ReturnType<Harness['start']>>
type RawNode = Awaited<ReturnType<Harness['raw']>>

/** A bare node of the same swarm, on the topic and heard by `victim`: it can publish anything. */
async function rawPublisher (victim: Member): Promise<{ raw: RawNode, pubsub: RawNode['services']['pubsub'], rawId: string }> {
  const raw = await h.raw()
  const pubsub = raw.services.pubsub
  pubsub.subscribe(ADVERT_TOPIC)
  await raw.dial(multiaddr(victim.addrs()[0]))
  await waitFor(() => pubsub.getSubscribers(ADVERT_TOPIC).some((p) => p.toString() === victim.peerId), 'the victim subscribed, as the raw node sees it')
  return { raw, pubsub, rawId: raw.peerId.toString() }
}

it('garbage, oversized, forged and absurd advertisements (gossip or hello) are dropped; the victim keeps working', async () => {
  const victim = await h.start()
  const friend = await h.start({ bootstrap: victim.addrs() })
  await waitFor(() => victim.view().length === 2 && friend.view().length === 2, 'a grid of two')

  const { raw, pubsub, rawId } = await rawPublisher(victim)
  const ad = (over: Record<string, unknown>): Uint8Array => encode({
    v: 1, peer: rawId, seq: 1, startedAt: Date.now(), addrs: [], version: '6.6.6', ...fakeDescription('evil'), ...over
  })
  const hostile: Array<[string, Uint8Array]> = [
    ['garbage bytes', Uint8Array.from([0xff, 0x00, 0x13, 0x37, 0xde, 0xad])],
    ['not a map', encode([1, 2, 3])],
    ['deeply nested', new Uint8Array(20_000).fill(0x81)],
    ['oversized', ad({ version: 'x'.repeat(MAX_ADVERT_BYTES) })],
    ['another peer\'s ad', ad({ peer: friend.peerId, seq: 999_999 })],
    ['the victim\'s own ad', ad({ peer: victim.peerId, seq: 999_999 })],
    ['negative cores', ad({ seq: 2, resources: { ...fakeDescription('evil').resources, cpu: { model: 'x', cores: -5 } } })],
    ['huge host name', ad({ seq: 3, resources: { ...fakeDescription('x'.repeat(10_000)).resources } })],
    ['NaN load', ad({ seq: 4, load: { ...fakeDescription('evil').load, cpuUtil: Number.NaN } })],
    ['a million GPUs', ad({ seq: 5, offer: { ...fakeDescription('evil').offer, gpus: Array.from({ length: 1000 }, (_, i) => i) } })],
    ['string seq', ad({ seq: '7' })],
    ['wrong version', ad({ v: 2, seq: 8 })]
  ]
  for (const [name, data] of hostile) {
    await expect(pubsub.publish(ADVERT_TOPIC, data), name).resolves.toBeDefined()
  }

  // the same lies sent directly, as a hello: refused the same way
  const lies: unknown[] = [
    decode(ad({ peer: friend.peerId, seq: 999_999 })),
    { ...decode(ad({ seq: 6 })) as object, load: { cpusFree: -1 } },
    'not an ad',
    { big: new Uint8Array(MAX_ADVERT_BYTES + 1) }
  ]
  for (const lie of lies) {
    const stream = await raw.dialProtocol(multiaddr(victim.addrs()[0]), HELLO_PROTOCOL)
    const ch = streamChannel(stream, { maxFrameBytes: 2 * MAX_ADVERT_BYTES, log: raw.logger.forComponent('test'), remotePeer: victim.peerId })
    await ch.send(lie)
    // the victim refuses and resets, or reads and closes: either way the stream ends
    await ch.recv().catch(() => {})
  }

  // a legitimate ad sent after the hostile ones arrives: the victim still reads the topic
  await pubsub.publish(ADVERT_TOPIC, ad({ seq: 100, version: '1.0.0' }))
  const seen = await waitFor(() => victim.view().find((p) => p.peer === rawId), 'the raw node\'s valid ad in the victim\'s view')
  expect(seen.version).toBe('1.0.0')
  expect(seen.seq).toBe(100)
  expect(seen.resources.host).toBe('evil')

  // nothing forged got in: three members, the friend's entry is its own (not seq 999999)
  expect(members(victim)).toEqual([victim.peerId, friend.peerId, rawId].sort())
  const friendEntry = victim.view().find((p) => p.peer === friend.peerId)!
  expect(friendEntry.version).toBe('0.0.0-test')
  expect(friendEntry.seq).toBeLessThan(1000)
  // and the victim's real neighbours still get its ads
  const before = friend.view().find((p) => p.peer === victim.peerId)!.seq
  await waitFor(() => friend.view().find((p) => p.peer === victim.peerId)!.seq > before, 'a newer ad from the victim')
  // the forged ads were rejected, not forwarded: the friend never saw the raw node's bad ones
  expect(friend.view().find((p) => p.peer === rawId)?.version ?? '1.0.0').toBe('1.0.0')
}, 30_000)

it('a copy of an advertisement with its signature but other data is dropped, before or after the real one', async () => {
  const victim = await h.start()
  const { pubsub, rawId } = await rawPublisher(victim)
  const ad = (seq: number, host: string): Uint8Array => encode({
    v: 1, peer: rawId, seq, startedAt: Date.now(), addrs: [], version: '1.0.0', ...fakeDescription(host)
  })
  // every message the raw node sends on the topic travels with a twin: the same author,
  // sequence number and signature, but the data of another advertisement
  type Rpc = { messages?: Array<{ topic?: string, data?: Uint8Array }> }
  const gs = pubsub as unknown as { sendRpc: (id: string, rpc: Rpc) => boolean }
  const send = gs.sendRpc.bind(gs)
  let twinFirst = true
  let forged: Uint8Array = new Uint8Array()
  let twins = 0
  gs.sendRpc = (id, rpc) => {
    const mine = rpc.messages?.filter((m) => m.topic === ADVERT_TOPIC) ?? []
    if (mine.length === 0) return send(id, rpc)
    const twin: Rpc = { messages: mine.map((m) => ({ ...m, data: forged })) }
    twins++
    if (twinFirst) { send(id, twin); return send(id, rpc) }
    const ok = send(id, rpc)
    send(id, twin)
    return ok
  }

  forged = ad(50, 'forged-first')
  await pubsub.publish(ADVERT_TOPIC, ad(10, 'honest'))
  const first = await waitFor(() => victim.view().find((p) => p.peer === rawId), 'the real ad, sent after its forged twin')
  expect(first.resources.host).toBe('honest')

  twinFirst = false
  forged = ad(60, 'forged-after')
  await pubsub.publish(ADVERT_TOPIC, ad(20, 'honest-again'))
  const second = await waitFor(() => victim.view().find((p) => p.peer === rawId && p.seq === 20), 'the second real ad')
  expect(second.resources.host).toBe('honest-again')

  // a later real ad still gets through, and neither twin ever did
  await pubsub.publish(ADVERT_TOPIC, ad(30, 'last'))
  await waitFor(() => victim.view().find((p) => p.peer === rawId && p.seq === 30), 'the last real ad')
  expect(victim.view().find((p) => p.peer === rawId)!.resources.host).toBe('last')
  expect(twins).toBeGreaterThanOrEqual(3)
}, 30_000)
