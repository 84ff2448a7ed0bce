/**
 * Tasks through the real binaries, as the task suites use them: submit with `vbatch`, read
 * records with `vgrid task show|list --json`, wait with `vgrid task wait`.
 */
import { expect } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { runCli, waitFor, tempDir, type AgentProc, type CliResult } from './procs.js'
import type { TaskRecord } from '../../src/agent/tasks/types.js'

export const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'upstream-failed', 'lost'])

/** A fresh workspace with the given files (string = content; { exec } = executable). */
export function workspace (files: Record<string, string | { content: string, exec: true }> = {}): string {
  const dir = tempDir('vgrid-tasks-ws-')
  for (const [rel, f] of Object.entries(files)) {
    const p = path.join(dir, rel)
    fs.mkdirSync(path.dirname(p), { recursive: true })
    fs.writeFileSync(p, typeof f === 'string' ? f : f.content, { mode: typeof f === 'string' ? 0o644 : 0o755 })
  }
  return dir
}

export const read = (dir: string, rel: string): string => fs.readFileSync(path.join(dir, rel), 'utf8')

export async function vbatch (agent: AgentProc, args: string[], cwd: string, timeoutMs = 30_000): Promise<CliResult> {
  return await runCli('vbatch', args, { home: agent.home, cwd, timeoutMs })
}

/** Submits and returns the ids vbatch printed. */
export async function submit (agent: AgentProc, args: string[], cwd: string): Promise<string[]> {
  const r = await vbatch(agent, args, cwd)
  expect(r.stderr, `vbatch ${args.join(' ')}`).toBe('')
  expect(r.code, `vbatch ${args.join(' ')}: ${r.stderr}`).toBe(0)
  const ids = r.stdout.trim().split('\n')
  for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}$/)
  return ids
}

export async function submitOne (agent: AgentProc, args: string[], cwd: string): Promise<string> {
  const ids = await submit(agent, args, cwd)
  expect(ids).toHaveLength(1)
  return ids[0]
}

export async function show (agent: AgentProc, id: string): Promise<TaskRecord> {
  const r = await agent.vgrid(['task', 'show', id, '--json'])
  if (r.code !== 0) throw new Error(`vgrid task show ${id} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as TaskRecord
}

export async function listAll (agent: AgentProc): Promise<TaskRecord[]> {
  const r = await agent.vgrid(['task', 'list', '--all', '--json'])
  if (r.code !== 0) throw new Error(`vgrid task list exited ${r.code}: ${r.stderr}`)
  return (JSON.parse(r.stdout) as { tasks: TaskRecord[] }).tasks
}

/** `vgrid task wait ID`: its exit status (the task's). */
export async function wait (agent: AgentProc, id: string, timeoutMs = 60_000): Promise<CliResult> {
  return await runCli('vgrid', ['task', 'wait', id], { home: agent.home, timeoutMs })
}

/** Polls until the task has ended, and returns its record. */
export async function ended (agent: AgentProc, id: string, timeoutMs = 30_000): Promise<TaskRecord> {
  return await waitFor(async () => {
    const t = await show(agent, id)
    return FINAL.has(t.state) ? t : undefined
  }, `task ${id} to end`, timeoutMs, 100)
}

/** Every task whose `parent` is `id`, from the grid-wide list. */
export async function childrenOf (agent: AgentProc, id: string): Promise<TaskRecord[]> {
  return (await listAll(agent)).filter((t) => t.parent === id)
}

