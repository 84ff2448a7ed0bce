/**
 * The command lines of `vrun` and `vbatch`: `[options] CMD [ARGS…]`. Options end at the first
 * word that is not an option (so `vrun ls -la` gives `-la` to ls) or at `--`. A general option
 * parser cannot do that, and mri (inside cac) also turns numeric-looking values into numbers
 * (`--cwd 010` would become `10`), so the split and the values come from a table of options
 * as data; cac only renders the help from the same table.
 */
import type { CAC } from 'cac'
import { UsageError } from './usage-error.js'

/** One option, as data: the splitter, the validation and the help all read it. */
export interface CliOption {
  long?: string
  short?: string
  /** Placeholder of the value in help; absent for a flag without a value. */
  value?: string
  description: string
  default?: string
  repeatable?: boolean
}

export interface SplitArgv {
  /** Values by option name (long name, or the short letter when there is none), in order. */
  values: Map<string, string[]>
  /** Every option as given, in command-line order (where the order across options matters). */
  items: Array<{ name: string, value: string }>
  command: string[]
}

export function optionName (o: CliOption): string {
  return o.long ?? o.short!
}

/** Splits `[options] CMD [ARGS…]`; accepts `--opt VAL`, `--opt=VAL`, `-x VAL` and `-xVAL`. */
export function splitArgv (argv: readonly string[], table: readonly CliOption[]): SplitArgv {
  const values = new Map<string, string[]>()
  const items: SplitArgv['items'] = []
  let i = 0
  for (; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--') { i++; break }
    if (!arg.startsWith('-') || arg === '-') break
    const long = arg.startsWith('--')
    let name: string
    let inline: string | undefined
    if (long) {
      const eq = arg.indexOf('=')
      name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
      if (eq !== -1) inline = arg.slice(eq + 1)
    } else {
      name = arg.slice(1, 2)
      if (arg.length > 2) inline = arg.slice(2)
    }
    const opt = table.find((o) => long ? o.long === name : o.short === name)
    if (opt === undefined) {
      throw new UsageError(`unknown option ${long ? `--${name}` : `-${name}`}`,
        'options go before the command; to give a command an option, put it after the command\'s name')
    }
    const shown = long ? `--${name}` : `-${name}`
    let value: string
    if (opt.value === undefined) {
      if (inline !== undefined) throw new UsageError(`option ${shown} takes no value`)
      value = ''
    } else if (inline !== undefined) {
      value = inline
    } else {
      if (i + 1 >= argv.length) throw new UsageError(`option ${shown} needs a value (${opt.value})`)
      value = argv[++i]!
    }
    const key = optionName(opt)
    values.set(key, [...(values.get(key) ?? []), value])
    items.push({ name: key, value })
  }
  return { values, items, command: argv.slice(i) }
}

/** Declares a table to cac, for its help only. */
export function declareOptions (cli: CAC, table: readonly CliOption[]): void {
  for (const o of table) {
    const flags = [o.short !== undefined ? `-${o.short}` : undefined, o.long !== undefined ? `--${o.long}` : undefined].filter(Boolean).join(', ')
    cli.option(o.value !== undefined ? `${flags} <${o.value}>` : flags, o.description, o.default !== undefined ? { default: o.default } : undefined)
    // cac gives a `--no-x` flag the default true, and would print "(default: true)" after it.
    const declared = cli.globalCommand.options.at(-1)
    if (declared?.negated === true && o.default === undefined) declared.config.default = undefined
  }
}
