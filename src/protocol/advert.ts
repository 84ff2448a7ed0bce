/**
 * Advertisements on the wire: CBOR-encoded PeerAds. Whatever arrives from the topic is
 * untrusted: parsePeerAd checks every field (type, range, length, count) and rebuilds the ad
 * from known fields only, so nothing unexpected reaches the view or the placement code.
 */
import { decode, encode } from 'cborg'
import { peerIdFromString } from '@libp2p/peer-id'
import { VgridError } from '../common/errors.js'
import { looksLikePeerId, MAX_ACCEPT_FROM } from '../common/peer-id.js'
import { bad, bool, int, num, obj, oneOf, str, optStr, strArray, strMap } from '../common/validate.js'
import {
  MAX_STATED_INTERVAL_MS, MAX_ADDR_CHARS, MAX_AD_ADDRS, MAX_ADVERT_BYTES, MAX_CPUS, MAX_GPU_INDEX, MAX_GPUS, MAX_LABELS,
  MAX_NAME_CHARS, MAX_POOLS, MAX_TASK_COUNT
} from '../grid/constants.js'
import type { GpuInfo, GpuUse, Load, Offer, PeerAd, Resources } from '../grid/types.js'

const MAX_BYTES = Number.MAX_SAFE_INTEGER
const MAX_PEER_ID_CHARS = 128

export function encodePeerAd (ad: PeerAd): Uint8Array {
  return encode(ad)
}

/** Decodes and validates an advertisement; throws ERR_MESSAGE_TOO_LARGE / ERR_BAD_MESSAGE. */
export function decodePeerAd (data: Uint8Array): PeerAd {
  if (data.byteLength > MAX_ADVERT_BYTES) {
    throw new VgridError('ERR_MESSAGE_TOO_LARGE', `an advertisement of ${data.byteLength} bytes is past the limit of ${MAX_ADVERT_BYTES}`)
  }
  let v: unknown
  try {
    v = decode(data, { rejectDuplicateMapKeys: true })
  } catch (err) {
    // deeply nested input ends here too, as a RangeError from the decoder's recursion
    bad(`advertisement does not decode: ${(err as Error).message.slice(0, 200)}`)
  }
  return parsePeerAd(v)
}

export function parsePeerAd (v: unknown): PeerAd {
  const m = obj(v, 'advertisement')
  if (m.v !== 1) bad('advertisement version is not 1')
  const peer = str(m.peer, 'peer', MAX_PEER_ID_CHARS)
  try {
    peerIdFromString(peer)
  } catch {
    bad('peer is not a peer id')
  }
  const ad: PeerAd = {
    v: 1,
    peer,
    seq: int(m.seq, 'seq', 0, Number.MAX_SAFE_INTEGER),
    startedAt: int(m.startedAt, 'startedAt', 0, Number.MAX_SAFE_INTEGER),
    addrs: strArray(m.addrs, 'addrs', MAX_AD_ADDRS, MAX_ADDR_CHARS),
    version: str(m.version, 'version', 64),
    resources: parseResources(m.resources),
    offer: parseOffer(m.offer),
    load: parseLoad(m.load)
  }
  if (m.leaving !== undefined && m.leaving !== null && bool(m.leaving, 'leaving')) ad.leaving = true
  // taken wide (a later version may refresh less often) and clamped where it is used
  if (m.every !== undefined && m.every !== null) ad.every = int(m.every, 'every', 0, MAX_STATED_INTERVAL_MS)
  return ad
}

function parseResources (v: unknown): Resources {
  const m = obj(v, 'resources')
  const os = obj(m.os, 'resources.os')
  const cpu = obj(m.cpu, 'resources.cpu')
  if (!Array.isArray(m.gpus) || m.gpus.length > MAX_GPUS) bad(`resources.gpus is not a list of at most ${MAX_GPUS}`)
  return {
    host: str(m.host, 'resources.host', MAX_NAME_CHARS),
    os: {
      platform: str(os.platform, 'os.platform', MAX_NAME_CHARS),
      distro: str(os.distro, 'os.distro', MAX_NAME_CHARS),
      release: str(os.release, 'os.release', MAX_NAME_CHARS),
      arch: str(os.arch, 'os.arch', MAX_NAME_CHARS)
    },
    cpu: { model: str(cpu.model, 'cpu.model', MAX_NAME_CHARS), cores: int(cpu.cores, 'cpu.cores', 0, MAX_CPUS) },
    memBytes: int(m.memBytes, 'resources.memBytes', 0, MAX_BYTES),
    gpus: m.gpus.map((g, i) => parseGpu(g, `resources.gpus[${i}]`))
  }
}

function parseGpu (v: unknown, what: string): GpuInfo {
  const m = obj(v, what)
  const gpu: GpuInfo = {
    index: int(m.index, `${what}.index`, 0, MAX_GPU_INDEX),
    vendor: str(m.vendor, `${what}.vendor`, MAX_NAME_CHARS),
    model: str(m.model, `${what}.model`, MAX_NAME_CHARS),
    memoryBytes: int(m.memoryBytes, `${what}.memoryBytes`, 0, MAX_BYTES)
  }
  const uuid = optStr(m.uuid, `${what}.uuid`, MAX_NAME_CHARS)
  if (uuid !== undefined) gpu.uuid = uuid
  return gpu
}

function gpuIndexes (v: unknown, what: string): number[] {
  if (!Array.isArray(v) || v.length > MAX_GPUS) bad(`${what} is not a list of at most ${MAX_GPUS}`)
  return v.map((g, i) => int(g, `${what}[${i}]`, 0, MAX_GPU_INDEX))
}

function parseOffer (v: unknown): Offer {
  const m = obj(v, 'offer')
  const offer: Offer = {
    cpus: num(m.cpus, 'offer.cpus', 0, MAX_CPUS),
    memBytes: int(m.memBytes, 'offer.memBytes', 0, MAX_BYTES),
    gpus: gpuIndexes(m.gpus, 'offer.gpus'),
    pools: strArray(m.pools, 'offer.pools', MAX_POOLS, MAX_NAME_CHARS),
    labels: strMap(m.labels, 'offer.labels', MAX_LABELS, MAX_NAME_CHARS)
  }
  // Optional: members of an older version do not send them.
  if (m.maxTasks !== undefined && m.maxTasks !== null) offer.maxTasks = int(m.maxTasks, 'offer.maxTasks', 1, MAX_TASK_COUNT)
  if (m.onlyWhenIdle !== undefined && m.onlyWhenIdle !== null && bool(m.onlyWhenIdle, 'offer.onlyWhenIdle')) offer.onlyWhenIdle = true
  if (m.acceptFrom !== undefined && m.acceptFrom !== null) {
    const ids = strArray(m.acceptFrom, 'offer.acceptFrom', MAX_ACCEPT_FROM, MAX_PEER_ID_CHARS)
    if (!ids.every(looksLikePeerId)) bad('offer.acceptFrom holds something other than peer ids')
    offer.acceptFrom = ids
  }
  if (m.isolation !== undefined && m.isolation !== null) offer.isolation = oneOf(m.isolation, 'offer.isolation', ['sandbox', 'none', 'unavailable'] as const)
  return offer
}

function parseLoad (v: unknown): Load {
  const m = obj(v, 'load')
  return {
    cpusFree: num(m.cpusFree, 'load.cpusFree', 0, MAX_CPUS),
    memFree: int(m.memFree, 'load.memFree', 0, MAX_BYTES),
    gpusFree: gpuIndexes(m.gpusFree, 'load.gpusFree'),
    running: int(m.running, 'load.running', 0, MAX_TASK_COUNT),
    queued: int(m.queued, 'load.queued', 0, MAX_TASK_COUNT),
    cpuUtil: num(m.cpuUtil, 'load.cpuUtil', 0, 100),
    ...(m.ownerBusy !== undefined && m.ownerBusy !== null && bool(m.ownerBusy, 'load.ownerBusy') ? { ownerBusy: true } : {}),
    ...(m.paused !== undefined && m.paused !== null && bool(m.paused, 'load.paused') ? { paused: true } : {}),
    ...(m.draining !== undefined && m.draining !== null && bool(m.draining, 'load.draining') ? { draining: true } : {}),
    ...(m.gpuUse !== undefined && m.gpuUse !== null ? { gpuUse: parseGpuUse(m.gpuUse) } : {}),
    ...(m.storeRoom !== undefined && m.storeRoom !== null ? { storeRoom: int(m.storeRoom, 'load.storeRoom', 0, MAX_BYTES) } : {})
  }
}

function parseGpuUse (v: unknown): GpuUse[] {
  if (!Array.isArray(v) || v.length > MAX_GPUS) return bad(`load.gpuUse is not a list of at most ${MAX_GPUS} entries`)
  return v.map((e, i) => {
    const u = obj(e, `load.gpuUse[${i}]`)
    return { index: int(u.index, 'load.gpuUse.index', 0, MAX_GPU_INDEX), task: str(u.task, 'load.gpuUse.task', 16), who: str(u.who, 'load.gpuUse.who', MAX_NAME_CHARS) }
  })
}
