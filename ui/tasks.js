/**
 * The task tree: every task the grid knows (`GET /tasks`), sub-tasks nested under their
 * parent, a fan-out's shards as one group, filters, and live states from `/events`.
 *
 * Built for a thousand rows: each task's row is made once and kept (by id); a change
 * updates the cells of that row only; a new task or a filter re-orders the kept rows. The
 * first screenful goes in at once, the rest in chunks between frames, and the time to the
 * first screenful is left on <body data-first-render-ms> for whoever measures.
 */
import { h, fill, setText, stateBadge, time, duration, commandLine, FINAL } from './dom.js'
import { get, getEarly, events } from './api.js'
import { buildTree, visibleRows, stateCounts, noFilter } from './tree.js'

/** A screenful at 800 px and a little more: the rest follows between frames. */
const FIRST_SCREEN_ROWS = 32
const CHUNK_ROWS = 250
/** A fan-out with more shards than this starts folded. */
const FOLD_SHARDS = 20
/** While tasks are live, the list is re-read this often: /events tells only what this agent owns. */
const REFRESH_MS = 5_000
/** New tasks announced by /events are fetched whole after this quiet time. */
const RELOAD_AFTER_MS = 800
const STATES = ['pending', 'queued', 'running', 'waiting-children', 'succeeded', 'failed', 'cancelled', 'upstream-failed', 'lost']
const COLUMNS = ['Name', 'Id', 'State', 'Command', 'Ran on', 'Submitter', 'Created', 'Took', 'Exit']

/** The first render of a page load is measured, not of each return to the list. */
let measured = false

export function mountTasks (main) {
  const t0 = performance.now()
  const tasks = new Map()
  const rows = new Map() // task id or group key → { tr, cells, depth }
  const collapsed = new Set()
  const folded = new Set() // groups folded once by default, so a later unfold sticks
  const filters = { state: '', name: '', submitter: '' }
  let roots = []
  let gone = false
  let laidOut = false
  let generation = 0
  let refreshTimer, reloadTimer, relayoutTimer, clock

  const body = h('tbody')
  const status = h('p', { className: 'muted', id: 'tasks-status' }, 'Loading tasks…')
  const count = h('span', { className: 'count', id: 'task-count' })
  const stateSel = h('select', { id: 'filter-state', 'aria-label': 'State' },
    h('option', { value: '' }, 'any state'), h('option', { value: 'active' }, 'active'),
    STATES.map((s) => h('option', { value: s }, s)))
  const nameIn = h('input', { id: 'filter-name', type: 'search', placeholder: 'name contains…', 'aria-label': 'Name' })
  const subIn = h('input', { id: 'filter-submitter', type: 'search', placeholder: 'submitter (user@host, peer)…', 'aria-label': 'Submitter' })
  const onFilter = () => {
    filters.state = stateSel.value
    filters.name = nameIn.value.trim()
    filters.submitter = subIn.value.trim()
    layout()
  }
  stateSel.addEventListener('change', onFilter)
  nameIn.addEventListener('input', onFilter)
  subIn.addEventListener('input', onFilter)

  fill(main, h('section', {},
    h('h2', {}, 'Tasks ', count),
    h('div', { className: 'filters' }, stateSel, nameIn, subIn),
    status,
    h('table', { className: 'grid tasks', id: 'task-tree' },
      h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', {}, c)))),
      body)))

  // ── rows ──

  const toggle = (id) => h('button', {
    type: 'button',
    className: 'fold',
    title: 'Fold or unfold',
    on: { click: () => { if (collapsed.has(id)) collapsed.delete(id); else collapsed.add(id); layout() } }
  })

  const taskRow = (t) => {
    const c = {
      fold: h('span', { className: 'fold-space' }),
      name: h('span', { className: 'name' }),
      id: h('a', { className: 'mono', href: `#/tasks/${encodeURIComponent(t.id)}` }, t.id),
      state: h('td'),
      cmd: h('td', { className: 'cmd' }),
      host: h('td'),
      user: h('td'),
      created: h('td', { className: 'nowrap' }),
      took: h('td', { className: 'nowrap num' }),
      exit: h('td', { className: 'num' })
    }
    const tr = h('tr', { dataset: { id: t.id } },
      h('td', { className: 'tree-name' }, c.fold, c.name), h('td', {}, c.id), c.state, c.cmd, c.host, c.user, c.created, c.took, c.exit)
    const row = { tr, c, depth: -1, hasKids: false, state: undefined }
    rows.set(t.id, row)
    return row
  }

  const updateTask = (row, t) => {
    const { c } = row
    setText(c.name, `${t.name ?? (t.shard === undefined ? '-' : '')}${t.shard !== undefined ? ` [${t.shard.index}/${t.shard.count}]` : ''}`)
    if (row.state !== t.state) { fill(c.state, stateBadge(t.state)); row.state = t.state; row.tr.dataset.state = t.state }
    c.state.title = t.error ?? ''
    const cmd = commandLine(t.argv)
    setText(c.cmd, cmd)
    c.cmd.title = cmd
    setText(c.host, t.host ?? '')
    setText(c.user, t.user ?? '')
    setText(c.created, time(t.created))
    setText(c.took, duration(t.started, t.ended))
    setText(c.exit, t.exitCode ?? '')
  }

  const groupRow = (g) => {
    const c = { fold: toggle(g.key), name: h('span', { className: 'name' }), state: h('td'), cmd: h('td', { className: 'cmd' }), host: h('td'), user: h('td'), created: h('td', { className: 'nowrap' }), took: h('td', { className: 'nowrap num' }) }
    const tr = h('tr', { className: 'group' },
      h('td', { className: 'tree-name' }, c.fold, c.name), h('td', { className: 'muted' }, 'fan-out'), c.state, c.cmd, c.host, c.user, c.created, c.took, h('td'))
    const row = { tr, c, depth: -1 }
    rows.set(g.key, row)
    return row
  }

  const updateGroup = (row, g) => {
    const { c } = row
    const first = g.tasks[0]
    setText(c.name, `${first.name ?? ''} [${g.tasks.length} of ${first.shard.count} shards]`)
    fill(c.state, stateCounts(g.tasks).map(([s, n]) => h('span', { className: `state s-${s}` }, `${n} ${s}`)))
    setText(c.cmd, commandLine(first.argv))
    setText(c.host, `${new Set(g.tasks.map((t) => t.host).filter(Boolean)).size} hosts`)
    setText(c.user, first.user ?? '')
    setText(c.created, time(first.created))
    const started = Math.min(...g.tasks.map((t) => t.started ?? Infinity))
    const ended = g.tasks.every((t) => FINAL.has(t.state)) ? Math.max(...g.tasks.map((t) => t.ended ?? 0)) : undefined
    setText(c.took, Number.isFinite(started) ? duration(started, ended) : '')
  }

  const place = (row, depth, hasKids, id) => {
    if (row.depth !== depth) { row.tr.style.setProperty('--depth', String(depth)); row.depth = depth }
    if (row.hasKids !== hasKids) {
      row.hasKids = hasKids
      const f = hasKids ? toggle(id) : h('span', { className: 'fold-space' })
      row.c.fold.replaceWith(f)
      row.c.fold = f
    }
    row.tr.classList.toggle('folded', collapsed.has(id))
  }

  // ── layout: the rows in tree order, made once each, put in chunks ──

  /** The row of a visible node, made the first time it shows, brought up to date. */
  const rowOf = ({ node, depth, context }) => {
    let row
    if (node.kind === 'task') {
      row = rows.get(node.task.id) ?? taskRow(node.task)
      updateTask(row, node.task)
      place(row, depth, node.children.length > 0, node.task.id)
    } else {
      row = rows.get(node.key) ?? groupRow(node)
      updateGroup(row, node)
      place(row, depth, true, node.key)
    }
    row.tr.classList.toggle('context', context)
    return row.tr
  }

  const layout = () => {
    const gen = ++generation
    const visible = visibleRows(roots, filters, collapsed)
    setText(count, noFilter(filters) ? `(${tasks.size})` : `(${visible.filter((v) => !v.context && v.node.kind === 'task').length} of ${tasks.size})`)
    status.textContent = tasks.size === 0 ? 'No tasks yet: submit one with vbatch or POST /api/v1/tasks.' : ''
    delete body.dataset.rows
    if (laidOut) {
      // later layouts (a new task, a filter) in one go: most rows exist, and a list that
      // shrank for a frame would lose the reader's scroll position
      body.replaceChildren(...visible.map(rowOf))
      body.dataset.rows = String(visible.length)
      return
    }
    // the first: a screenful now; the rest made and put in chunks, between frames
    body.replaceChildren(...visible.slice(0, FIRST_SCREEN_ROWS).map(rowOf))
    laidOut = true
    if (!measured) {
      measured = true
      document.body.dataset.firstRowsMadeMs = String(Math.round(performance.now()))
      document.body.dataset.scriptStartMs = String(Math.round(t0))
      // after the frame that shows it: what a user waits for
      requestAnimationFrame(() => setTimeout(() => {
        document.body.dataset.firstRenderMs = String(Math.round(performance.now()))
        document.body.dataset.firstRenderSinceMountMs = String(Math.round(performance.now() - t0))
      }, 0))
    }
    let at = FIRST_SCREEN_ROWS
    const more = () => {
      if (gen !== generation || gone) return
      if (at < visible.length) {
        body.append(...visible.slice(at, at + CHUNK_ROWS).map(rowOf))
        at += CHUNK_ROWS
        requestAnimationFrame(() => setTimeout(more, 0))
      } else {
        body.dataset.rows = String(visible.length)
        if (document.body.dataset.allRowsMs === undefined && tasks.size > 0) document.body.dataset.allRowsMs = String(Math.round(performance.now()))
      }
    }
    requestAnimationFrame(() => setTimeout(more, 0))
  }

  const rebuild = () => {
    roots = buildTree(tasks)
    if (!measured) document.body.dataset.treeBuiltMs = String(Math.round(performance.now()))
    for (const n of walkGroups(roots)) {
      if (!folded.has(n.key)) { folded.add(n.key); if (n.tasks[0].shard.count > FOLD_SHARDS) collapsed.add(n.key) }
    }
    layout()
  }

  const relayoutSoon = () => { clearTimeout(relayoutTimer); relayoutTimer = setTimeout(rebuild, 50) }

  // ── data ──

  const load = async () => {
    clearTimeout(refreshTimer)
    try {
      const { tasks: list, unreachable } = await getEarly('/tasks')
      if (gone) return
      if (!measured) document.body.dataset.tasksReadMs = String(Math.round(performance.now()))
      const ids = new Set(list.map((t) => t.id))
      for (const id of tasks.keys()) if (!ids.has(id)) tasks.delete(id)
      for (const t of list) tasks.set(t.id, t)
      rebuild()
      if (unreachable.length > 0) status.textContent = `Not shown: the tasks of ${unreachable.length} member(s) that did not answer.`
    } catch (err) {
      if (!gone) status.textContent = `Could not read the tasks: ${err.message}`
    }
    if (!gone && [...tasks.values()].some((t) => !FINAL.has(t.state))) refreshTimer = setTimeout(load, REFRESH_MS)
  }

  const onTask = (s) => {
    const known = tasks.get(s.id)
    if (known === undefined) {
      // a new task: shown now from what the event says, its whole record fetched soon after
      tasks.set(s.id, { argv: [], deps: [], attempts: [], children: [], ...s })
      relayoutSoon()
      clearTimeout(reloadTimer)
      reloadTimer = setTimeout(load, RELOAD_AFTER_MS)
      return
    }
    // a summary's command line is clipped: the record's own stays
    const { argv: _clipped, ...change } = s
    Object.assign(known, change)
    const row = rows.get(s.id)
    if (row !== undefined) updateTask(row, known)
    // a shard's group sums its states; a state filter may show or hide the row
    if (known.shard !== undefined || filters.state !== '') relayoutSoon()
  }

  // after the stream was down, what it missed is read again
  let down = false
  const onStatus = (s) => {
    if (s === 'open' && down) void load()
    down = s !== 'open'
  }
  const off = [events.subscribe('task', onTask), events.subscribe('status', onStatus)]
  // running tasks' "took" column ticks
  clock = setInterval(() => {
    for (const [id, row] of rows) {
      const t = tasks.get(id)
      if (t !== undefined && t.state === 'running' && row.tr.isConnected) setText(row.c.took, duration(t.started, t.ended))
    }
  }, 1000)
  void load()
  return () => {
    gone = true
    for (const f of off) f()
    clearTimeout(refreshTimer); clearTimeout(reloadTimer); clearTimeout(relayoutTimer); clearInterval(clock)
  }
}

function * walkGroups (nodes) {
  for (const n of nodes) {
    if (n.kind === 'group') yield n
    yield * walkGroups(n.children)
  }
}
