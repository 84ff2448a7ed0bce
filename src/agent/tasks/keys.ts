/**
 * What an owner keeps in memory of its ended tasks (up to MAX_TASKS, 20,000): a TaskKey each,
 * enough to find a task by name, id prefix or parent and to settle its dependents. The rest
 * of its record is read back from the journal (journal.ts) when asked for.
 *
 * A key holds its id, its state and its shard index; what the tasks of one submission share
 * (name, parent, owner, workspace, creation time, shard count) is one KeyGroup, shared by all
 * the shards of a `-N` fan-out. Whole records cost ~2 KB of heap each (40 MB for 20,000),
 * a key with a group of its own ~0.2 KB, a shard of a fan-out ~0.1 KB (the soak benchmark).
 */
import type { WorkspaceRef } from '../../fs-sync/index.js'
import type { TaskRecord, TaskState } from './types.js'

/** What the tasks of one submission share. */
interface KeyGroup {
  /** The id of the first shard of the submission. */
  readonly group: string
  readonly name: string | undefined
  readonly parent: string | undefined
  readonly owner: string
  /**
   * Its workspace's directory as its user sees it ('' for none): on the submitter; for a
   * sub-task, where its task's workspace is mounted (the submitter's path, not this copy's).
   */
  readonly workspace: string
  readonly created: number
  /** Shards of its fan-out; 0 for a task that is not one. */
  readonly count: number
  /** Keys kept that share it (EndedTasks). */
  members: number
}

/** A task as the name, parent and dependency lookups see it. */
export class TaskKey {
  constructor (readonly id: string, readonly state: TaskState, private readonly index: number, readonly of: KeyGroup) {}

  get name (): string | undefined { return this.of.name }
  get parent (): string | undefined { return this.of.parent }
  get owner (): string { return this.of.owner }
  get group (): string { return this.of.group }
  get workspace (): string { return this.of.workspace }
  get created (): number { return this.of.created }
  get shard (): { index: number, count: number } | undefined {
    return this.of.count > 0 ? { index: this.index, count: this.of.count } : undefined
  }
}

/** What a key is made from: a task's record and its submission's group and workspace. */
export interface Keyed { record: TaskRecord, group: string, workspace?: WorkspaceRef }

/** One copy of a short string many keys hold (an owner's peer id, a workspace). */
export type Intern = (s: string) => string

/** A key of its own, not kept (a task not yet ended, for a lookup). */
export function keyOf (s: Keyed, intern: Intern = (x) => x): TaskKey {
  return new TaskKey(s.record.id, intern(s.record.state) as TaskState, s.record.shard?.index ?? 0, groupOf(s, intern))
}

function groupOf (s: Keyed, intern: Intern): KeyGroup {
  const r = s.record
  return { group: s.group, name: r.name, parent: r.parent, owner: intern(r.owner), workspace: intern(s.workspace?.mount ?? s.workspace?.dir ?? ''), created: r.created, count: r.shard?.count ?? 0, members: 0 }
}

/** The keys of the ended tasks, in the order they were added: the first are forgotten first. */
export class EndedTasks {
  private readonly keys = new Map<string, TaskKey>()
  /** The groups of fan-outs with keys kept, by the id of their first shard. */
  private readonly groups = new Map<string, KeyGroup>()

  constructor (private readonly intern: Intern) {}

  get size (): number { return this.keys.size }
  get (id: string): TaskKey | undefined { return this.keys.get(id) }
  has (id: string): boolean { return this.keys.has(id) }
  values (): IterableIterator<TaskKey> { return this.keys.values() }
  ids (): IterableIterator<string> { return this.keys.keys() }

  add (s: Keyed): void {
    let g: KeyGroup | undefined
    if (s.record.shard !== undefined) {
      g = this.groups.get(s.group)
      if (g === undefined) this.groups.set(s.group, g = groupOf(s, this.intern))
    }
    g ??= groupOf(s, this.intern)
    g.members++
    this.keys.set(s.record.id, new TaskKey(s.record.id, this.intern(s.record.state) as TaskState, s.record.shard?.index ?? 0, g))
  }

  /** Forgets the key added first; its id, or undefined when none is kept. */
  forgetFirst (): string | undefined {
    const first = this.keys.values().next()
    if (first.done === true) return undefined
    const k = first.value
    this.keys.delete(k.id)
    if (--k.of.members === 0 && this.groups.get(k.group) === k.of) this.groups.delete(k.group)
    return k.id
  }
}
