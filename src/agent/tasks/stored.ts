/**
 * A task as the journal keeps it (journal.ts): its record and what placing it again needs
 * (the spec, where, the workspace, its group), one JSON line each.
 */
import { parseRunSpec, type RunSpec } from '../../protocol/session.js'
import type { WorkspaceRef } from '../../fs-sync/index.js'
import { parseTaskRecord, type TaskRecord } from './types.js'

export interface Stored {
  record: TaskRecord
  spec: RunSpec
  on?: string
  workspace?: WorkspaceRef
  /** The id of the first shard of the submission: `--after NAME` waits for all of them. */
  group: string
  gang: boolean
  /** Submitted by a guest (a sub-task of a guest task): contained wherever it runs. */
  guest?: boolean
}

/** A record as the journal holds it, validated. */
export function storedOf (raw: Record<string, unknown>): Stored {
  const record = parseTaskRecord(raw.record)
  const stored: Stored = { record, spec: parseRunSpec(raw.spec), group: typeof raw.group === 'string' ? raw.group : record.id, gang: raw.gang === true }
  if (typeof raw.on === 'string') stored.on = raw.on
  if (raw.workspace !== null && typeof raw.workspace === 'object') stored.workspace = raw.workspace as WorkspaceRef
  if (raw.guest === true) stored.guest = true
  return stored
}

export function serialize (e: Stored): string {
  return JSON.stringify({ record: e.record, spec: e.spec, on: e.on, workspace: e.workspace, group: e.group, gang: e.gang, guest: e.guest })
}
