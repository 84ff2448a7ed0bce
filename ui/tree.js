/**
 * The task tree's shape, apart from the DOM: sub-tasks under the task they came from, and the
 * shards of one fan-out (`vbatch -N`) as one group, as `vgrid task list` groups them. Pure
 * functions of the records, so the view can rebuild the order cheaply after any change.
 */

/** What makes shards one fan-out: one submission (owner, name, count, time), as the CLI keys it. */
export function fanOutKey (t) {
  return t.shard !== undefined ? `${t.owner}\u0000${t.name ?? ''}\u0000${t.shard.count}\u0000${t.created}\u0000${t.parent ?? ''}` : undefined
}

// ids are hex: compared as plain strings (localeCompare costs an ICU call per tie)
const bySubmission = (a, b) => a.created - b.created || (a.shard?.index ?? 0) - (b.shard?.index ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/**
 * Nodes: { kind: 'task', task, children: Node[] } or { kind: 'group', key, tasks, children: Node[] }
 * (a group's children are its shards' nodes). Roots newest first; under a parent, in the
 * order they were submitted.
 */
export function buildTree (tasks) {
  const kids = new Map()
  const roots = []
  for (const t of tasks.values()) {
    const p = t.parent !== undefined && tasks.has(t.parent) ? t.parent : undefined
    if (p === undefined) roots.push(t)
    else {
      if (!kids.has(p)) kids.set(p, [])
      kids.get(p).push(t)
    }
  }
  const seen = new Set()
  const level = (list, newestFirst) => {
    list.sort(bySubmission)
    if (newestFirst) list.reverse()
    const out = []
    const groups = new Map()
    for (const t of list) {
      if (seen.has(t.id)) continue // a cycle in hostile records: shown once
      seen.add(t.id)
      const node = { kind: 'task', task: t, children: level(kids.get(t.id) ?? [], false) }
      const key = fanOutKey(t)
      if (key === undefined || t.shard.count < 2) { out.push(node); continue }
      let g = groups.get(key)
      if (g === undefined) {
        g = { kind: 'group', key, tasks: [], children: [] }
        groups.set(key, g)
        out.push(g)
      }
      g.tasks.push(t)
      g.children.push(node)
    }
    for (const g of groups.values()) {
      g.children.sort((a, b) => a.task.shard.index - b.task.shard.index)
      g.tasks.sort((a, b) => a.shard.index - b.shard.index)
    }
    return out
  }
  return level(roots, true)
}

export const ACTIVE = new Set(['pending', 'queued', 'running', 'waiting-children'])

/** Whether a record passes the filters: state ('' any, 'active', or one state), name and submitter as substrings. */
export function matches (t, f) {
  if (f.state === 'active' ? !ACTIVE.has(t.state) : f.state !== '' && t.state !== f.state) return false
  if (f.name !== '' && !(t.name ?? '').toLowerCase().includes(f.name.toLowerCase())) return false
  if (f.submitter !== '') {
    const s = f.submitter.toLowerCase()
    if (![t.user, t.submitter, t.owner, t.ownerHost].some((v) => typeof v === 'string' && v.toLowerCase().includes(s))) return false
  }
  return true
}

export const noFilter = (f) => f.state === '' && f.name === '' && f.submitter === ''

/**
 * The rows to show, in order: { node, depth }. With filters, a task shows when it matches or
 * when something under it does (then it is context); collapsed nodes hide what is under them.
 */
export function visibleRows (roots, filters, collapsed) {
  const out = []
  const filtering = !noFilter(filters)
  const keep = new Map()
  const wanted = (node) => {
    if (!filtering) return true
    if (keep.has(node)) return keep.get(node)
    const self = node.kind === 'task' ? matches(node.task, filters) : false
    let any = self
    for (const c of node.children) if (wanted(c)) any = true
    keep.set(node, any)
    return any
  }
  const walk = (nodes, depth) => {
    for (const n of nodes) {
      if (!wanted(n)) continue
      out.push({ node: n, depth, context: filtering && n.kind === 'task' && !matches(n.task, filters) })
      const id = n.kind === 'task' ? n.task.id : n.key
      // a filter opens what holds a match
      if (!collapsed.has(id) || (filtering && n.children.some(wanted))) walk(n.children, depth + 1)
    }
  }
  walk(roots, 0)
  return out
}

/** Counts of states in a group, most advanced first: "3 succeeded · 1 running". */
export function stateCounts (tasks) {
  const counts = new Map()
  for (const t of tasks) counts.set(t.state, (counts.get(t.state) ?? 0) + 1)
  return [...counts].sort((a, b) => b[1] - a[1])
}
