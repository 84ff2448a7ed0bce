/**
 * The dashboard: hash routes (`#/` members, `#/tasks` the task tree, `#/tasks/ID` one task),
 * so the agent serves one page and `vbatch` can print `BASE/#/tasks/ID`. Each view mounts
 * into <main> and returns what unmounts it (its timers, its streams).
 */
import { h, fill } from './dom.js'
import { events, onUnauthenticated } from './api.js'
import { mountMembers } from './members.js'
import { mountTasks } from './tasks.js'
import { mountTask } from './task.js'

const main = document.getElementById('view')
const live = document.getElementById('live')
let unmount = () => {}
let loggedOut = false

const ROUTES = [
  [/^#?\/?$/, 'members', () => mountMembers(main)],
  [/^#\/tasks\/?$/, 'tasks', () => mountTasks(main)],
  [/^#\/tasks\/([0-9a-f]{16})$/, 'tasks', (m) => mountTask(main, m[1])]
]

function route () {
  if (loggedOut) return
  unmount()
  unmount = () => {}
  const hash = location.hash
  for (const [re, tab, mount] of ROUTES) {
    const m = re.exec(hash)
    if (m === null) continue
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.dataset.tab === tab)
    unmount = mount(m) ?? (() => {})
    return
  }
  fill(main, h('p', { className: 'notice' }, 'No such page. ', h('a', { href: '#/' }, 'Members'), ' · ', h('a', { href: '#/tasks' }, 'Tasks')))
}

onUnauthenticated(() => {
  if (loggedOut) return
  loggedOut = true
  unmount()
  fill(main, h('section', { className: 'notice login' },
    h('h2', {}, 'Not logged in'),
    h('p', {}, 'This dashboard needs a session. On the agent\'s machine, run'),
    h('pre', {}, 'vgrid ui'),
    h('p', {}, 'It opens this page logged in (or prints a one-time link to open; it works once, for a minute).')))
})

events.subscribe('status', (s) => {
  live.textContent = s === 'open' ? 'live' : 'reconnecting…'
  live.className = s === 'open' ? 'live on' : 'live off'
})

window.addEventListener('hashchange', route)
events.start()
route()
