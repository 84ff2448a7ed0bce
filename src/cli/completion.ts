/**
 * `vgrid completion bash|zsh|fish`: a script that completes vgrid's commands, their actions
 * and their options, made from the same cac declarations the parser uses (vgrid.ts), so it
 * cannot fall behind them. Static: completing a word runs no vgrid (nor any agent request),
 * so it is instant even with no agent running.
 *
 *   bash: `source <(vgrid completion bash)` in ~/.bashrc
 *   zsh:  `source <(vgrid completion zsh)` in ~/.zshrc, after `compinit`
 *   fish: `vgrid completion fish > ~/.config/fish/completions/vgrid.fish`
 */
import type { CAC } from 'cac'

export const SHELLS = ['bash', 'zsh', 'fish'] as const
export type Shell = typeof SHELLS[number]

/** The words after a command that are actions of it, not options. */
const ACTIONS: Record<string, readonly string[]> = {
  agent: ['set', 'stop'],
  task: ['list', 'show', 'log', 'cancel', 'wait'],
  service: ['install', 'uninstall'],
  completion: SHELLS
}

interface Spec {
  name: string
  description: string
  actions: readonly string[]
  /** `--join`, `-f`…; those that take a value are marked. */
  options: Array<{ flag: string, value: boolean, description: string }>
}

/** Every command with its actions and options, as cac has them. */
export function completionSpec (cli: CAC): Spec[] {
  return cli.commands.filter((c) => c.name !== '').map((c) => ({
    name: c.name,
    description: c.description,
    actions: ACTIONS[c.name] ?? [],
    options: c.options.flatMap((o) => o.names.map((n) => ({
      flag: n.length === 1 ? `-${n}` : `--${n.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`)}`,
      value: o.required === true,
      description: o.description
    })))
  }))
}

export function completionScript (shell: Shell, cli: CAC): string {
  const spec = completionSpec(cli)
  switch (shell) {
    case 'bash': return bash(spec)
    case 'zsh': return zsh(spec)
    case 'fish': return fish(spec)
  }
}

const GLOBAL = ['--help', '--version']

function bash (spec: Spec[]): string {
  const cases = spec.map((c) => {
    const opts = [...c.options.map((o) => o.flag), ...GLOBAL].join(' ')
    const valued = c.options.filter((o) => o.value).map((o) => o.flag).join('|')
    return `    ${c.name})\n` +
      (valued !== '' ? `      case "$prev" in ${valued}) return 0 ;; esac\n` : '') +
      (c.actions.length > 0
        ? `      if [ "$COMP_CWORD" -eq 2 ] && [[ "$cur" != -* ]]; then words="${c.actions.join(' ')}"; else words="${opts}"; fi\n`
        : `      words="${opts}"\n`) +
      '      ;;\n'
  }).join('')
  return `# bash completion for vgrid: source <(vgrid completion bash)
_vgrid_complete() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" words=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${spec.map((c) => c.name).join(' ')} ${GLOBAL.join(' ')}" -- "$cur") )
    return 0
  fi
  case "\${COMP_WORDS[1]}" in
${cases}  esac
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
complete -o default -F _vgrid_complete vgrid
`
}

/** Text for a zsh `_describe` item or `_arguments` spec: `:` and `[]` escaped. */
const zq = (s: string): string => s.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/'/g, '\'\\\'\'').replace(/\[/g, '\\[').replace(/\]/g, '\\]')

function zsh (spec: Spec[]): string {
  const cases = spec.map((c) => {
    const opts = c.options.map((o) => `'${o.flag}[${zq(o.description)}]${o.value ? ':value:' : ''}'`).join(' ')
    const actions = c.actions.length > 0 ? `      if (( CURRENT == 3 )); then compadd -- ${c.actions.join(' ')}; fi\n` : ''
    return `    ${c.name})\n${actions}      _arguments -s ${opts === '' ? "'--help[Show help]'" : opts} '*::arg:_default'\n      ;;\n`
  }).join('')
  return `#compdef vgrid
# zsh completion for vgrid: source <(vgrid completion zsh), after compinit
_vgrid() {
  local -a commands
  commands=(
${spec.map((c) => `    '${zq(c.name)}:${zq(c.description)}'`).join('\n')}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  case "$words[2]" in
${cases}  esac
}
compdef _vgrid vgrid
`
}

/** Single-quoted for fish. */
const fq = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, '\\\'')}'`

function fish (spec: Spec[]): string {
  const names = spec.map((c) => c.name).join(' ')
  const lines = ['# fish completion for vgrid: vgrid completion fish > ~/.config/fish/completions/vgrid.fish', 'complete -c vgrid -f']
  for (const c of spec) {
    lines.push(`complete -c vgrid -n "not __fish_seen_subcommand_from ${names}" -a ${c.name} -d ${fq(c.description)}`)
    if (c.actions.length > 0) {
      lines.push(`complete -c vgrid -n "__fish_seen_subcommand_from ${c.name}; and not __fish_seen_subcommand_from ${c.actions.join(' ')}" -a ${fq(c.actions.join(' '))}`)
    }
    for (const o of c.options) {
      const flag = o.flag.startsWith('--') ? `-l ${o.flag.slice(2)}` : `-s ${o.flag.slice(1)}`
      lines.push(`complete -c vgrid -n "__fish_seen_subcommand_from ${c.name}" ${flag}${o.value ? ' -r' : ''} -d ${fq(o.description)}`)
    }
  }
  lines.push('complete -c vgrid -l help -d \'Show help\'', 'complete -c vgrid -l version -d \'Show the version\'')
  return lines.join('\n') + '\n'
}
