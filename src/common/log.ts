/**
 * Daemon diagnostics. `debug` lines appear only when DEBUG names the component
 * (`DEBUG=vgrid:*`, `DEBUG=vgrid:control`); `info` (routine events the owner of the machine
 * may want to follow: it lends again, it stops lending), warnings and errors always go to
 * stderr, one line each, because a refused message or a failed task is something the owner
 * should see. A warning is for what is wrong, not for what happens every day.
 * What the user of a command reads goes through src/cli/output.ts instead.
 */

export interface Logger {
  debug (msg: string, ...args: unknown[]): void
  info (msg: string, ...args: unknown[]): void
  warn (msg: string, ...args: unknown[]): void
  error (msg: string, ...args: unknown[]): void
}

function enabled (component: string, pattern = process.env.DEBUG ?? ''): boolean {
  return pattern.split(/[\s,]+/).some((p) => {
    if (p === '') return false
    if (p.endsWith('*')) return component.startsWith(p.slice(0, -1))
    return component === p
  })
}

function fmt (v: unknown): string {
  if (v instanceof Error) return (v as { code?: string }).code !== undefined ? `${(v as { code?: string }).code}: ${v.message}` : v.message
  if (typeof v === 'string') return v
  try { return JSON.stringify(v) } catch { return String(v) }
}

export function createLogger (component: string): Logger {
  const name = `vgrid:${component}`
  const on = enabled(name)
  const line = (level: string, msg: string, args: unknown[]): void => {
    const rest = args.length > 0 ? ' ' + args.map(fmt).join(' ') : ''
    process.stderr.write(`${new Date().toISOString()} ${name} ${level} ${msg}${rest}\n`)
  }
  return {
    debug: (msg, ...args) => { if (on) line('debug', msg, args) },
    info: (msg, ...args) => { line('info', msg, args) },
    warn: (msg, ...args) => { line('warn', msg, args) },
    error: (msg, ...args) => { line('error', msg, args) }
  }
}
