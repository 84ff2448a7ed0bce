/**
 * The simulator's figure as a hand-written SVG: completion time against offered load, one line
 * per placer, mean on the left and p99 on the right. A string in, a string out: no I/O.
 */
import type { RunSummary } from './metrics.js'

const COLOURS: Record<string, string> = { vgrid: '#1f6fc5', omniscient: '#2a9d3a', random: '#d0412b' }
const W = 460
const H = 340
const M = { left: 58, right: 16, top: 44, bottom: 48 }

function esc (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** Round steps (1, 2, 5 × 10^n) covering [min, max]. */
function ticks (min: number, max: number): number[] {
  const raw = Math.max(max - min, 1e-9) / 5
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw
  const out: number[] = []
  for (let v = Math.floor(min / step) * step; v < max + step * 0.999; v += step) out.push(Number(v.toPrecision(6)))
  return out
}

/** Two decimals at most, for coordinates. */
function n (v: number): string {
  return String(Math.round(v * 100) / 100)
}

function panel (runs: RunSummary[], value: (r: RunSummary) => number, title: string, dx: number, band?: { placer: string, factor: number, label: string }): string {
  const loads = [...new Set(runs.map((r) => r.load))].sort((a, b) => a - b)
  const placers = [...new Set(runs.map((r) => r.placer))]
  // The axis spans the data, not from 0: the placers differ by seconds on top of the durations.
  const ref = (r: RunSummary): number => (band !== undefined && r.placer === band.placer ? value(r) * band.factor : NaN)
  const vals = [...runs.map(value), ...runs.map(ref)].filter(Number.isFinite)
  const span = Math.max(...vals) - Math.min(...vals)
  const yt = ticks(Math.max(0, Math.min(...vals) - 0.1 * span), Math.max(...vals) + 0.1 * span)
  const bottom = yt[0]
  const top = yt[yt.length - 1]
  const lo = loads[0] ?? 0
  const hi = loads[loads.length - 1] ?? 1
  const x = (l: number): number => dx + M.left + (hi === lo ? 0.5 : (l - lo) / (hi - lo)) * (W - M.left - M.right)
  const y = (v: number): number => M.top + (1 - (v - bottom) / (top - bottom)) * (H - M.top - M.bottom)
  const parts: string[] = []
  parts.push(`<text x="${dx + W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`)
  for (const t of yt) {
    parts.push(`<line x1="${dx + M.left}" x2="${dx + W - M.right}" y1="${n(y(t))}" y2="${n(y(t))}" stroke="#e3e3e3"/>`)
    parts.push(`<text x="${dx + M.left - 6}" y="${n(y(t) + 4)}" text-anchor="end" font-size="11">${t}</text>`)
  }
  for (const l of loads) {
    parts.push(`<line x1="${n(x(l))}" x2="${n(x(l))}" y1="${H - M.bottom}" y2="${H - M.bottom + 5}" stroke="#333"/>`)
    parts.push(`<text x="${n(x(l))}" y="${H - M.bottom + 18}" text-anchor="middle" font-size="11">${Math.round(l * 100)}%</text>`)
  }
  parts.push(`<line x1="${dx + M.left}" x2="${dx + W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="#333"/>`)
  parts.push(`<line x1="${dx + M.left}" x2="${dx + M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="#333"/>`)
  parts.push(`<text x="${dx + (W + M.left - M.right) / 2}" y="${H - 10}" text-anchor="middle" font-size="12">offered load (share of the grid's cores)</text>`)
  parts.push(`<text transform="translate(${dx + 16} ${(H + M.top - M.bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="12">seconds, submit to end</text>`)
  if (band !== undefined) {
    const pts = loads.flatMap((l) => {
      const r = runs.find((q) => q.placer === band.placer && q.load === l)
      return r === undefined || !Number.isFinite(ref(r)) ? [] : [[x(l), y(ref(r))]]
    })
    parts.push(`<polyline fill="none" stroke="#888" stroke-width="1.4" stroke-dasharray="6 4" points="${pts.map(([a, b]) => `${n(a)},${n(b)}`).join(' ')}"/>`)
    const last = pts[pts.length - 1]
    if (last !== undefined) parts.push(`<text x="${n(last[0] - 4)}" y="${n(last[1] - 6)}" text-anchor="end" font-size="11" fill="#666">${esc(band.label)}</text>`)
  }
  for (const p of placers) {
    const pts = loads.flatMap((l) => {
      const r = runs.find((q) => q.placer === p && q.load === l)
      return r === undefined || !Number.isFinite(value(r)) ? [] : [[x(l), y(value(r))]]
    })
    const c = COLOURS[p] ?? '#555'
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2.2" points="${pts.map(([a, b]) => `${n(a)},${n(b)}`).join(' ')}"/>`)
    for (const [a, b] of pts) parts.push(`<circle cx="${n(a)}" cy="${n(b)}" r="3.2" fill="${c}"/>`)
  }
  return parts.join('\n')
}

export function plotSvg (runs: RunSummary[], subtitle: string): string {
  const placers = [...new Set(runs.map((r) => r.placer))]
  const legend = placers.map((p, i) => {
    const lx = 70 + i * 150
    return `<line x1="${lx}" x2="${lx + 26}" y1="${H + 22}" y2="${H + 22}" stroke="${COLOURS[p] ?? '#555'}" stroke-width="3"/>` +
      `<text x="${lx + 32}" y="${H + 26}" font-size="12">${esc(p)}</text>`
  }).join('\n')
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + 60}" viewBox="0 0 ${2 * W} ${H + 60}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    panel(runs, (r) => r.meanCompletionS, 'Mean job completion time', 0, { placer: 'omniscient', factor: 1.1, label: 'omniscient + 10% (target)' }),
    panel(runs, (r) => r.p99CompletionS, 'p99 job completion time', W),
    legend,
    `<text x="${2 * W - 12}" y="${H + 26}" text-anchor="end" font-size="11" fill="#555">${esc(subtitle)}</text>`,
    '</svg>',
    ''
  ].join('\n')
}
