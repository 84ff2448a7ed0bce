/**
 * The page's one way to make DOM. Data goes in as text only (text nodes, textContent,
 * attribute values): nothing a task, a log or a peer sends can become markup, so a task named
 * `<img src=x onerror=…>` shows as those characters. There is no innerHTML in the dashboard.
 */

/**
 * h('td', { className: 'state', title: why }, 'running', child) → an element.
 * Props: className, title, href (ours: built from ids), dataset, on (event listeners), and
 * any other attribute as a string. Children: strings (as text), numbers, nodes, arrays, or
 * null/undefined/false (skipped).
 */
export function h (tag, props = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'className') el.className = v
    else if (k === 'dataset') Object.assign(el.dataset, v)
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn)
    else if (k === 'style') for (const [p, val] of Object.entries(v)) el.style.setProperty(p, val)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  append(el, children)
  return el
}

function append (el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue
    if (Array.isArray(c)) append(el, c)
    else if (c instanceof Node) el.appendChild(c)
    else el.appendChild(document.createTextNode(String(c)))
  }
}

/** Replaces an element's content with `children` (same rules as h). */
export function fill (el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

/** Sets text only when it changed (a live update of 1,000 rows touches only what moved). */
export function setText (el, text) {
  const s = text === undefined || text === null ? '' : String(text)
  if (el.textContent !== s) el.textContent = s
}

// ── formatting ──

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
export function bytes (n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '-'
  let i = 0
  while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++ }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${UNITS[i]}`
}

// made once: toLocaleString() builds a formatter at each call, a millisecond each for 1,000 rows
const CLOCK = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false })
const DATE_CLOCK = new Intl.DateTimeFormat([], { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false })
const DAY_MS = 24 * 3600_000

/** A time of today as its clock time, an older one with its date. */
export function time (ms) {
  if (typeof ms !== 'number') return ''
  const midnight = new Date().setHours(0, 0, 0, 0)
  return ms >= midnight && ms < midnight + DAY_MS ? CLOCK.format(ms) : DATE_CLOCK.format(ms)
}

export function duration (from, to) {
  if (typeof from !== 'number') return ''
  const s = Math.max(0, Math.round(((to ?? Date.now()) - from) / 1000))
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
}

/** A shell-like line of an argv, for reading (not for pasting into a shell). */
export function commandLine (argv) {
  if (!Array.isArray(argv)) return ''
  return argv.map((a) => /^[A-Za-z0-9_./=:@%+,-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`).join(' ')
}

/** The state badge: text, and a class that colours it. */
export function stateBadge (state) {
  return h('span', { className: `state s-${state ?? 'unknown'}` }, state ?? '?')
}

export const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'upstream-failed', 'lost'])
