import fs from 'node:fs'
import path from 'node:path'

/** The first executable `name` in `dirs`, or undefined. */
export function findTool (name: string, dirs: string[]): string | undefined {
  for (const d of dirs) {
    if (d === '') continue
    const p = path.join(d, name)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return p
    } catch {}
  }
  return undefined
}
