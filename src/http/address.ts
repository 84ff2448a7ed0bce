/**
 * Where the agent serves HTTP: `--http ADDR:PORT` as the owner types it, and whether an address
 * is loopback (only loopback may go without TLS). Light: the CLI's configuration imports it.
 */
import net from 'node:net'

/** The dashboard's port unless told otherwise: the grid's (7321) plus one. */
export const DEFAULT_HTTP_PORT = 7322
export const DEFAULT_HTTP_HOST = '127.0.0.1'

export interface HttpAddress {
  /** An IP literal (IPv6 without brackets). */
  host: string
  /** 0: any free port (tests). */
  port: number
}

/**
 * `127.0.0.1:7322`, `[::1]:7322`, `localhost:7322`, `0.0.0.0:8443`, or a port alone (on
 * 127.0.0.1); `off` turns HTTP off. Returns a reason in words for anything else.
 */
export function parseHttpAddress (text: string): HttpAddress | 'off' | { error: string } {
  const s = text.trim()
  if (s.toLowerCase() === 'off') return 'off'
  let host: string
  let port: string
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s)
  if (v6 !== null) {
    host = v6[1]!
    port = v6[2]!
  } else if (/^\d+$/.test(s)) {
    host = DEFAULT_HTTP_HOST
    port = s
  } else {
    const colon = s.lastIndexOf(':')
    if (colon <= 0 || s.indexOf(':') !== colon) return { error: 'expected ADDR:PORT, such as 127.0.0.1:7322 or [::1]:7322, or off' }
    host = s.slice(0, colon)
    port = s.slice(colon + 1)
  }
  if (host.toLowerCase() === 'localhost') host = DEFAULT_HTTP_HOST
  if (net.isIP(host) === 0) return { error: `${host} is not an IP address (a host name is not resolved: give 127.0.0.1, or the address of one of this machine's interfaces)` }
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) return { error: `${port} is not a port (0 to 65535)` }
  return { host, port: Number(port) }
}

/** 127.0.0.0/8, ::1 and ::ffff:127.x: reachable only from this machine. */
export function isLoopback (host: string): boolean {
  const h = host.toLowerCase()
  if (net.isIPv4(h)) return h.startsWith('127.')
  return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h)
}

/** `127.0.0.1:7322`, `[::1]:7322`: the authority part of a URL. */
export function authority (host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
}

/** The dashboard's page of a task: a hash route, so the page needs no server-side routes. */
export function dashboardTaskUrl (base: string, id: string): string {
  return `${base}/#/tasks/${encodeURIComponent(id)}`
}
