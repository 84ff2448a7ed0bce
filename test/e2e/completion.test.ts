/**
 * `vgrid completion bash|zsh|fish` through the real binary: the script parses, registers
 * itself, and completes the commands, the actions of `task` and `agent`, and their options.
 * No agent is needed (none is started).
 */
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { runCli, tempDir } from '../helpers/procs.js'

async function script (shell: string): Promise<string> {
  const r = await runCli('vgrid', ['completion', shell], { home: tempDir() })
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
  return r.stdout
}

function has (cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
}

/** What bash offers for the words typed so far (the last one being completed). */
function bashComplete (file: string, words: string[]): string[] {
  const r = spawnSync('bash', ['--norc', '-c', `source ${JSON.stringify(file)}; COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(' ')}); COMP_CWORD=${words.length - 1}; _vgrid_complete; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' })
  expect(r.stderr).toBe('')
  return r.stdout.split('\n').filter((l) => l !== '')
}

describe('vgrid completion', () => {
  it('bash: the script parses, registers for vgrid, and completes commands, actions and options', async () => {
    const file = path.join(tempDir(), 'vgrid.bash')
    fs.writeFileSync(file, await script('bash'))
    expect(spawnSync('bash', ['-n', file]).status).toBe(0)
    const registered = spawnSync('bash', ['--norc', '-c', `source ${JSON.stringify(file)}; complete -p vgrid`], { encoding: 'utf8' })
    expect(registered.status).toBe(0)
    expect(registered.stdout).toMatch(/complete .*-F _vgrid_complete vgrid/)
    expect(bashComplete(file, ['vgrid', ''])).toEqual(expect.arrayContaining(['agent', 'peers', 'status', 'task', 'completion', 'join-token', 'ui']))
    expect(bashComplete(file, ['vgrid', 'ta'])).toEqual(['task'])
    expect(bashComplete(file, ['vgrid', 'task', ''])).toEqual(['list', 'show', 'log', 'cancel', 'wait'])
    expect(bashComplete(file, ['vgrid', 'task', 'log', 'x', '--'])).toEqual(expect.arrayContaining(['--follow', '--stderr-only']))
    expect(bashComplete(file, ['vgrid', 'agent', 's'])).toEqual(['set', 'stop'])
    expect(bashComplete(file, ['vgrid', 'agent', '--only'])).toEqual(['--only-when-idle'])
    expect(bashComplete(file, ['vgrid', 'completion', ''])).toEqual(['bash', 'zsh', 'fish'])
  })

  it('zsh and fish: scripts for each, checked by the shell itself', async () => {
    for (const shell of ['zsh', 'fish']) {
      const text = await script(shell)
      for (const word of ['agent', 'task', 'peers', 'completion', 'stderr-only']) expect(text).toContain(word)
      // .ci/run installs both: a script no shell has read is not checked
      expect(has(shell), `${shell} is not installed: apt-get install ${shell}`).toBe(true)
      const file = path.join(tempDir(), `vgrid.${shell}`)
      fs.writeFileSync(file, text)
      const r = spawnSync(shell, ['-n', file], { encoding: 'utf8' })
      expect(r.stderr).toBe('')
      expect(r.status).toBe(0)
      if (shell === 'zsh') {
        // registered with compinit's table of completers
        const reg = spawnSync('zsh', ['-f', '-c', `autoload -U compinit; compinit -u -d ${JSON.stringify(path.join(tempDir(), 'zcompdump'))}; source ${JSON.stringify(file)}; print -r -- \${_comps[vgrid]}`], { encoding: 'utf8' })
        expect(reg.stdout.trim()).toBe('_vgrid')
      } else {
        const offered = (line: string): string[] => spawnSync('fish', ['--no-config', '-c', `source ${JSON.stringify(file)}; complete -C ${JSON.stringify(line)}`], { encoding: 'utf8' })
          .stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t')[0]!)
        expect(offered('vgrid ta')).toEqual(['task'])
        expect(offered('vgrid task ')).toEqual(expect.arrayContaining(['list', 'show', 'log', 'cancel', 'wait']))
        expect(offered('vgrid task log x --st')).toEqual(['--stderr-only'])
      }
    }
  })

  it('refuses a shell it does not complete, with usage', async () => {
    const r = await runCli('vgrid', ['completion', 'tcsh'], { home: tempDir() })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('no completion for tcsh')
    const none = await runCli('vgrid', ['completion'], { home: tempDir() })
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('needs a shell')
  })
})
