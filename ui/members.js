/**
 * Members: every machine of the grid as this agent sees it (`GET /peers`): host, full peer id,
 * cores, load, memory, pools and labels, whether and how it lends; then every GPU with who
 * holds it. Refreshed on members joining or leaving, and every few seconds for the load.
 */
import { h, fill, bytes } from './dom.js'
import { get, events } from './api.js'

const REFRESH_MS = 3_000

export function mountMembers (main) {
  const status = h('p', { className: 'muted' }, 'Loading members…')
  const members = h('tbody')
  const gpus = h('tbody')
  fill(main,
    h('section', {},
      h('h2', {}, 'Members ', h('span', { className: 'count', id: 'member-count' })),
      status,
      h('table', { className: 'grid members', id: 'members' },
        h('thead', {}, h('tr', {}, ['Host', 'Peer id', 'CPU', 'Load', 'Memory', 'Pools · labels', 'Lending', 'Seen'].map((c) => h('th', {}, c)))),
        members)),
    h('section', {},
      h('h2', {}, 'GPUs'),
      h('table', { className: 'grid gpus', id: 'gpus' },
        h('thead', {}, h('tr', {}, ['Host', 'GPU', 'Model', 'Memory', 'Holder', 'Task'].map((c) => h('th', {}, c)))),
        gpus)))

  let gone = false
  let timer
  const load = async () => {
    clearTimeout(timer)
    try {
      const { peers } = await get('/peers')
      if (gone) return
      render(peers)
      status.textContent = ''
    } catch (err) {
      if (!gone) status.textContent = `Could not read the members: ${err.message}`
    }
    if (!gone) timer = setTimeout(load, REFRESH_MS)
  }

  const render = (peers) => {
    peers.sort((a, b) => Number(b.self) - Number(a.self) || a.resources.host.localeCompare(b.resources.host) || a.peer.localeCompare(b.peer))
    document.getElementById('member-count').textContent = `(${peers.length})`
    fill(members, peers.map(memberRow))
    const rows = peers.flatMap(gpuRows)
    fill(gpus, rows.length > 0 ? rows : h('tr', {}, h('td', { colspan: 6, className: 'muted' }, 'No member has a GPU.')))
  }

  const off = [events.subscribe('member-joined', load), events.subscribe('member-left', load)]
  void load()
  return () => { gone = true; clearTimeout(timer); for (const f of off) f() }
}

function memberRow (p) {
  const r = p.resources
  const o = p.offer
  const l = p.load
  return h('tr', { dataset: { peer: p.peer } },
    h('td', {}, h('span', { className: 'host' }, r.host), p.self ? h('span', { className: 'tag' }, 'this agent') : null),
    h('td', {}, peerId(p.peer)),
    h('td', { title: r.cpu.model }, `${o.cpus} of ${r.cpu.cores} cores`, h('div', { className: 'muted small' }, r.cpu.model)),
    h('td', {}, `${Math.round(l.cpuUtil)} % busy`, h('div', { className: 'muted small' }, `${l.running} running · ${l.queued} queued · ${fmtCpus(l.cpusFree)} cores free`)),
    h('td', {}, `${bytes(o.memBytes)} of ${bytes(r.memBytes)}`, h('div', { className: 'muted small' }, `${bytes(l.memFree)} free`)),
    h('td', {}, poolsAndLabels(o)),
    h('td', {}, lending(p)),
    h('td', { className: 'muted' }, p.self ? 'now' : `${Math.round(p.lastSeenMs / 1000)} s ago`))
}

function fmtCpus (n) {
  return Number.isInteger(n) ? String(n) : n.toFixed(1)
}

/** The whole id, selectable at once, with a button that copies it. */
export function peerId (id) {
  const code = h('code', { className: 'peer-id' }, id)
  const button = h('button', {
    type: 'button',
    className: 'copy',
    title: 'Copy the peer id',
    on: {
      click: async () => {
        try {
          await navigator.clipboard.writeText(id)
          button.textContent = 'copied'
        } catch {
          getSelection()?.selectAllChildren(code)
          button.textContent = 'selected'
        }
        setTimeout(() => { button.textContent = 'copy' }, 1500)
      }
    }
  }, 'copy')
  return h('span', { className: 'peer' }, code, button)
}

function poolsAndLabels (o) {
  const items = [
    ...o.pools.map((p) => h('span', { className: 'tag pool' }, p)),
    ...Object.entries(o.labels).map(([k, v]) => h('span', { className: 'tag label' }, `${k}=${v}`))
  ]
  return items.length > 0 ? items : h('span', { className: 'muted' }, '-')
}

/** Whether it takes work now, and on what terms. */
function lending (p) {
  const o = p.offer
  const l = p.load
  let state = 'lending'
  let cls = 'ok'
  if (p.leaving) { state = 'leaving'; cls = 'off' } else if (l.draining) { state = 'draining'; cls = 'warn' } else if (l.paused) { state = 'paused'; cls = 'warn' } else if (l.ownerBusy) { state = 'owner busy'; cls = 'warn' } else if (o.isolation === 'unavailable') { state = 'no sandbox'; cls = 'off' } else if (o.cpus === 0) { state = 'lends nothing'; cls = 'off' }
  const terms = []
  if (o.onlyWhenIdle) terms.push('only when idle')
  if (o.maxTasks !== undefined) terms.push(`at most ${o.maxTasks} tasks`)
  if (o.isolation === 'none') terms.push('unconfined')
  if (o.acceptFrom !== undefined) terms.push(`from ${o.acceptFrom.length} members only`)
  return [h('span', { className: `lend ${cls}` }, state), terms.length > 0 ? h('div', { className: 'muted small' }, terms.join(' · ')) : null]
}

function gpuRows (p) {
  const lent = new Set(p.offer.gpus)
  const use = new Map((p.load.gpuUse ?? []).map((u) => [u.index, u]))
  return p.resources.gpus.map((g) => {
    const u = use.get(g.index)
    const holder = u !== undefined
      ? h('span', { className: 'holder' }, u.who)
      : h('span', { className: lent.has(g.index) ? 'lend ok' : 'muted' }, lent.has(g.index) ? 'free' : 'not lent')
    return h('tr', { dataset: { peer: p.peer, gpu: String(g.index) } },
      h('td', {}, p.resources.host),
      h('td', {}, `#${g.index}`),
      h('td', {}, g.model),
      h('td', {}, bytes(g.memoryBytes)),
      h('td', {}, holder),
      h('td', {}, u !== undefined ? h('a', { href: `#/tasks/${encodeURIComponent(u.task)}`, className: 'mono' }, u.task) : ''))
  })
}
