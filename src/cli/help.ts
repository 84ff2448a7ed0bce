/**
 * cac prints help with console.info; we want it as text, to send usage to stderr on a usage
 * error and to test it. The capture swaps console.info for the duration of one call.
 */
import type { CAC } from 'cac'

/** cac's help as text: trailing blanks trimmed (cac pads options that have no default). */
export function captureHelp (cli: CAC): string {
  const info = console.info
  let text = ''
  console.info = (...args: unknown[]) => { text += `${args.join(' ')}\n` }
  try {
    cli.outputHelp()
  } finally {
    console.info = info
  }
  return text.split('\n').map((l) => l.trimEnd()).join('\n')
}

/**
 * A help callback that puts a paragraph of explanation right after the usage line; `describe`
 * is asked at print time, so a CLI with sub-commands can explain the one matched.
 */
export function withDescription (describe: () => string | undefined) {
  return (sections: HelpSection[]): HelpSection[] => {
    const description = describe()
    if (description === undefined) return sections
    const at = sections.findIndex((s) => s.title === 'Usage')
    sections.splice(at + 1, 0, { body: description })
    return sections
  }
}

interface HelpSection { title?: string, body: string }
