/**
 * One tenant's policy in memory, indexed for the hot path: a check looks up the user's groups and
 * asks each group's grant index, so its cost depends on the user's groups and the permission's
 * segments, not on the tenant's size.
 *
 * A TenantState is only ever mutated synchronously (one whole batch of changes at a time), so a
 * reader on the same event loop never sees half a change; a full reload builds a new state aside
 * and swaps it in.
 */
import type { Change, GroupData, LoggedChange, TenantSnapshot } from '../model.js'

/** The grants of one group, split for matching: exact permissions, and wildcard prefixes. */
class GrantIndex {
  /** Concrete grants, e.g. `documents:read`. */
  readonly exact = new Set<string>()
  /** Wildcard grants by their prefix including the colon: `documents:*` → `documents:`. */
  readonly prefixes = new Set<string>()
  /** True when the group holds `*`. */
  all = false

  add (grant: string): void {
    if (grant === '*') this.all = true
    else if (grant.endsWith(':*')) this.prefixes.add(grant.slice(0, -1))
    else this.exact.add(grant)
  }

  delete (grant: string): void {
    if (grant === '*') this.all = false
    else if (grant.endsWith(':*')) this.prefixes.delete(grant.slice(0, -1))
    else this.exact.delete(grant)
  }

  /** Does a grant of this group match the concrete `permission`? O(segments). */
  matches (permission: string): boolean {
    if (this.all || this.exact.has(permission)) return true
    if (this.prefixes.size === 0) return false
    for (let i = permission.indexOf(':'); i !== -1; i = permission.indexOf(':', i + 1)) {
      if (this.prefixes.has(permission.slice(0, i + 1))) return true
    }
    return false
  }

  list (): string[] {
    const out = [...this.exact, ...[...this.prefixes].map((p) => p + '*')]
    if (this.all) out.push('*')
    return out.sort()
  }
}

interface GroupState {
  grants: GrantIndex
  users: Set<string>
}

export class TenantState {
  /** The revision this state reflects. */
  revision: number
  readonly #groups = new Map<string, GroupState>()
  /** user → names of the groups they belong to. */
  readonly #userGroups = new Map<string, Set<string>>()

  constructor (snapshot: TenantSnapshot) {
    this.revision = snapshot.revision
    for (const group of snapshot.groups) {
      const state = this.#createGroup(group.name)
      for (const permission of group.permissions) state.grants.add(permission)
      for (const user of group.users) this.#assign(state, group.name, user)
    }
  }

  /** The hot path. */
  check (user: string, permission: string): boolean {
    const groups = this.#userGroups.get(user)
    if (groups === undefined) return false
    for (const name of groups) {
      if (this.#groups.get(name)!.grants.matches(permission)) return true
    }
    return false
  }

  /** Number of groups, for stats. */
  get size (): number {
    return this.#groups.size
  }

  /**
   * Applies changelog entries in order. Entries at or below the current revision are skipped;
   * a gap stops the batch and returns false (the caller reloads). Synchronous, so atomic for readers.
   */
  applyAll (changes: readonly LoggedChange[]): boolean {
    for (const change of changes) {
      if (change.revision <= this.revision) continue
      if (change.revision !== this.revision + 1) return false
      this.apply(change)
      this.revision = change.revision
    }
    return true
  }

  /** Applies one change's effect (idempotent), without touching the revision. */
  apply (change: Change): void {
    const group = this.#groups.get(change.group)
    switch (change.op) {
      case 'create-group':
        if (group === undefined) this.#createGroup(change.group)
        break
      case 'delete-group':
        if (group === undefined) break
        for (const user of group.users) this.#unassign(group, change.group, user)
        this.#groups.delete(change.group)
        break
      case 'add-permission':
        (group ?? this.#createGroup(change.group)).grants.add(change.permission)
        break
      case 'remove-permission':
        group?.grants.delete(change.permission)
        break
      case 'assign-user':
        this.#assign(group ?? this.#createGroup(change.group), change.group, change.user)
        break
      case 'unassign-user':
        if (group !== undefined) this.#unassign(group, change.group, change.user)
        break
    }
  }

  /** The whole tenant, as plain data (sorted). */
  view (): GroupData[] {
    return [...this.#groups.keys()].sort().map((name) => {
      const group = this.#groups.get(name)!
      return { name, permissions: group.grants.list(), users: [...group.users].sort() }
    })
  }

  /** One user's groups and the grants they hold through them (sorted, deduplicated). */
  userView (user: string): { groups: string[], permissions: string[] } {
    const groups = [...(this.#userGroups.get(user) ?? [])].sort()
    const permissions = new Set<string>()
    for (const name of groups) {
      for (const grant of this.#groups.get(name)!.grants.list()) permissions.add(grant)
    }
    return { groups, permissions: [...permissions].sort() }
  }

  #createGroup (name: string): GroupState {
    const state = { grants: new GrantIndex(), users: new Set<string>() }
    this.#groups.set(name, state)
    return state
  }

  #assign (group: GroupState, name: string, user: string): void {
    group.users.add(user)
    let groups = this.#userGroups.get(user)
    if (groups === undefined) this.#userGroups.set(user, groups = new Set())
    groups.add(name)
  }

  #unassign (group: GroupState, name: string, user: string): void {
    group.users.delete(user)
    const groups = this.#userGroups.get(user)
    if (groups === undefined) return
    groups.delete(name)
    if (groups.size === 0) this.#userGroups.delete(user)
  }
}
