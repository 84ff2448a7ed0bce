/**
 * One task: its state and why, command line, where it ran, each attempt, dependencies and
 * sub-tasks (linked), exit code, the live log (`/tasks/ID/log?follow=1` as Server-Sent
 * Events, stdout and stderr told apart), and Cancel. Kept current by `/events`.
 */
import { h, fill, stateBadge, time, duration, commandLine, FINAL } from './dom.js'
import { get, post, events, API } from './api.js'
import { peerId } from './members.js'

/** The log keeps this many characters on the page; the whole log is a link away. */
const MAX_LOG_CHARS = 2_000_000
const RELOAD_AFTER_MS = 150
const CONFIRM_MS = 4_000

export function mountTask (main, id) {
  let gone = false
  let record
  let reloadTimer
  const title = h('h2', { className: 'task-title' }, id)
  const cancel = h('button', { type: 'button', id: 'cancel', className: 'danger', disabled: true }, 'Cancel task')
  const message = h('p', { className: 'muted', id: 'task-message' })
  const details = h('tbody')
  const attempts = h('tbody')
  const deps = h('tbody')
  const kids = h('tbody')
  const history = h('tbody')
  const logView = h('pre', { className: 'log', id: 'log', tabindex: '0' })
  const logState = h('span', { className: 'muted', id: 'log-state' }, 'connecting…')
  const showOut = h('input', { type: 'checkbox', checked: true, id: 'show-stdout' })
  const showErr = h('input', { type: 'checkbox', checked: true, id: 'show-stderr' })
  showOut.addEventListener('change', () => { logView.classList.toggle('hide-out', !showOut.checked) })
  showErr.addEventListener('change', () => { logView.classList.toggle('hide-err', !showErr.checked) })

  const section = (name, head, body, id) => h('section', { id },
    h('h3', {}, name),
    h('table', { className: 'grid' }, h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))), body))

  fill(main,
    h('p', {}, h('a', { href: '#/tasks' }, '← all tasks')),
    h('div', { className: 'task-head' }, title, cancel),
    message,
    h('section', { id: 'details' }, h('table', { className: 'kv' }, details)),
    h('section', { id: 'log-section' },
      h('h3', {}, 'Log ', logState),
      h('div', { className: 'log-tools' },
        h('label', {}, showOut, ' stdout'), h('label', {}, showErr, h('span', { className: 'err-key' }, ' stderr')),
        h('a', { href: `${API}/tasks/${encodeURIComponent(id)}/log`, target: '_blank', rel: 'noopener' }, 'the whole log as text')),
      logView),
    section('Attempts', ['#', 'Ran on', 'Peer', 'Started', 'Ended', 'Took', 'Ended as', 'Exit', 'Error'], attempts, 'attempts'),
    section('Dependencies', ['Kind', 'Name', 'Task', 'State'], deps, 'deps'),
    section('Sub-tasks', ['Name', 'Task', 'State', 'Ran on', 'Exit'], kids, 'children'),
    section('History', ['At', 'State', 'Why'], history, 'history'))

  // ── cancel: a second click within a few seconds confirms ──
  let armed
  cancel.addEventListener('click', async () => {
    if (armed === undefined) {
      cancel.textContent = 'Click again to cancel'
      armed = setTimeout(() => { armed = undefined; cancel.textContent = 'Cancel task' }, CONFIRM_MS)
      return
    }
    clearTimeout(armed)
    armed = undefined
    cancel.disabled = true
    cancel.textContent = 'Cancelling…'
    try {
      const r = await post(`/tasks/${encodeURIComponent(id)}/cancel`)
      render(r.task, r.shards)
    } catch (err) {
      message.textContent = `Could not cancel: ${err.message}${err.hint !== undefined ? ` (${err.hint})` : ''}`
      cancel.disabled = false
    }
    cancel.textContent = 'Cancel task'
  })

  // ── the record ──

  const load = async () => {
    try {
      const r = await get(`/tasks/${encodeURIComponent(id)}`)
      if (gone) return
      render(r.task, r.shards)
      await loadKids(r.task)
    } catch (err) {
      if (gone) return
      message.textContent = err.code === 'ERR_TASK_NOT_FOUND' ? 'No such task on this grid.' : `Could not read the task: ${err.message}`
    }
  }
  const reloadSoon = () => { clearTimeout(reloadTimer); reloadTimer = setTimeout(load, RELOAD_AFTER_MS) }

  const render = (t, shards) => {
    record = t
    fill(title, t.name ?? t.id, ' ', stateBadge(t.state))
    document.title = `${t.name ?? t.id} · ${t.state} · vgrid`
    cancel.disabled = FINAL.has(t.state)
    const rows = [
      ['Id', h('code', {}, t.id)],
      ['State', [stateBadge(t.state), t.error !== undefined ? h('span', { className: 'error' }, ` ${t.error}`) : null]],
      ['Command', h('code', { className: 'argv', id: 'argv' }, commandLine(t.argv))],
      ['Exit code', t.exitCode ?? '-'],
      ['Ran on', t.host !== undefined ? [h('span', { className: 'host' }, t.host), ' ', t.peer !== undefined ? peerId(t.peer) : null] : '-'],
      ['Submitter', [t.user ?? '-', t.submitter !== undefined && t.submitter !== t.owner ? [' from ', peerId(t.submitter)] : null]],
      ['Kept by', [t.ownerHost, ' ', peerId(t.owner)]],
      ['Created', time(t.created)],
      ['Started', time(t.started) || '-'],
      ['Ended', t.ended !== undefined ? `${time(t.ended)} (took ${duration(t.started ?? t.created, t.ended)})` : '-'],
      t.parent !== undefined ? ['Parent', h('a', { href: `#/tasks/${encodeURIComponent(t.parent)}`, className: 'mono' }, t.parent)] : null,
      t.shard !== undefined ? ['Shard', `${t.shard.index} of ${t.shard.count} (VGRID_SHARD_INDEX=${t.shard.index})`] : null,
      ['Retries', String(t.retries)],
      t.timeoutMs !== undefined ? ['Timeout', duration(0, t.timeoutMs)] : null,
      ['Kind', t.attached ? 'vrun (attached to a terminal)' : 'vbatch']
    ]
    fill(details, rows.filter(Boolean).map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))))
    fill(attempts, t.attempts.length === 0
      ? none(9, 'Not started yet.')
      : t.attempts.map((a, i) => h('tr', {},
        h('td', { className: 'num' }, i + 1), h('td', {}, a.host), h('td', {}, peerId(a.peer)), h('td', {}, time(a.started)),
        h('td', {}, time(a.ended)), h('td', { className: 'num' }, duration(a.started, a.ended)), h('td', {}, a.state !== undefined ? stateBadge(a.state) : ''),
        h('td', { className: 'num' }, a.exitCode ?? ''), h('td', { className: 'error' }, a.error ?? ''))))
    fill(deps, t.deps.length === 0
      ? none(4, 'None.')
      : t.deps.map((d) => h('tr', { dataset: { id: d.id } }, h('td', {}, d.kind === 'success' ? 'after success of' : d.kind === 'fail' ? 'after failure of' : 'after'),
        h('td', {}, d.name), h('td', {}, h('a', { href: `#/tasks/${encodeURIComponent(d.id)}`, className: 'mono' }, d.id)), h('td', { className: 'dep-state' }))))
    fill(history, (t.history ?? []).map((c) => h('tr', {}, h('td', { className: 'nowrap' }, time(c.at)), h('td', {}, stateBadge(c.state)), h('td', {}, c.why))))
    if (shards !== undefined) kidsShown(shards)
  }

  const none = (span, text) => h('tr', {}, h('td', { colspan: span, className: 'muted' }, text))

  /** Sub-tasks and dependencies with their names and states: one read of the list. */
  const loadKids = async (t) => {
    if (t.children.length === 0 && t.deps.length === 0) { fill(kids, none(5, 'None.')); return }
    const { tasks } = await get('/tasks')
    if (gone) return
    const byId = new Map(tasks.map((x) => [x.id, x]))
    kidsShown(t.children.map((c) => byId.get(c) ?? { id: c }))
    for (const tr of deps.querySelectorAll('tr[data-id]')) {
      const d = byId.get(tr.dataset.id)
      if (d !== undefined) fill(tr.querySelector('.dep-state'), stateBadge(d.state))
    }
  }
  const kidsShown = (list) => {
    fill(kids, list.length === 0 ? none(5, 'None.') : list.map((c) => h('tr', { dataset: { id: c.id } },
      h('td', {}, `${c.name ?? '-'}${c.shard !== undefined ? ` [${c.shard.index}/${c.shard.count}]` : ''}`),
      h('td', {}, h('a', { href: `#/tasks/${encodeURIComponent(c.id)}`, className: 'mono' }, c.id)),
      h('td', {}, c.state !== undefined ? stateBadge(c.state) : '?'),
      h('td', {}, c.host ?? ''), h('td', { className: 'num' }, c.exitCode ?? ''))))
  }

  // ── the live log ──

  let source
  let chars = 0
  let last // { fd, node }
  const append = (fd, text) => {
    if (text === '') return
    if (last !== undefined && last.fd === fd) last.node.appendData(text)
    else {
      const node = document.createTextNode(text)
      logView.appendChild(h('span', { className: fd === 2 ? 'stderr' : 'stdout' }, node))
      last = { fd, node }
    }
    chars += text.length
    while (chars > MAX_LOG_CHARS && logView.firstChild !== null && logView.firstChild !== last.node.parentNode) {
      chars -= logView.firstChild.textContent.length
      logView.firstChild.remove()
      logView.classList.add('cut')
    }
    const atEnd = logView.scrollTop + logView.clientHeight >= logView.scrollHeight - 40
    if (atEnd) logView.scrollTop = logView.scrollHeight
  }
  const follow = () => {
    source?.close()
    logView.replaceChildren()
    chars = 0
    last = undefined
    const es = new EventSource(`${API}/tasks/${encodeURIComponent(id)}/log?follow=1`)
    source = es
    es.addEventListener('open', () => { logState.textContent = 'following…'; logState.className = 'live on' })
    es.addEventListener('log', (e) => {
      let d
      try { d = JSON.parse(e.data) } catch { return }
      append(d.fd, typeof d.text === 'string' ? d.text : '')
    })
    es.addEventListener('end', () => {
      es.close()
      logState.textContent = 'ended'
      logState.className = 'muted'
      logView.dataset.ended = 'true'
      reloadSoon()
    })
    es.addEventListener('error', (e) => {
      // the server's `error` event has data; the browser's own (a dropped stream) has none
      es.close()
      let text = 'the log stream stopped'
      if (typeof e.data === 'string') { try { text = JSON.parse(e.data).error.message } catch {} }
      fill(logState, `${text} · `, h('button', { type: 'button', className: 'link', on: { click: follow } }, 'follow again'))
      logState.className = 'muted'
    })
  }

  const off = events.subscribe('task', (s) => {
    if (s.id === id || s.parent === id || record?.children.includes(s.id) || record?.deps.some((d) => d.id === s.id)) reloadSoon()
  })
  void load()
  follow()
  return () => {
    gone = true
    off()
    source?.close()
    clearTimeout(reloadTimer)
    clearTimeout(armed)
  }
}
