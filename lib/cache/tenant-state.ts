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

/** Up to this many wildcard grants per group are matched with `startsWith`, beyond it by slicing at each `:`. */
const PREFIX_SCAN_LIMIT = 8

/** The grants of one group, split for matching: exact permissions, and wildcard prefixes. */
class GrantIndex {
  /** Concrete grants, e.g. `documents:read`. */
  readonly exact = new Set<string>()
  /** Wildcard grants by their prefix including the colon: `documents:*` → `documents:`. */
  readonly prefixes = new Set<string>()
  /** The same prefixes as an array, for an allocation-free scan when there are few. */
  #prefixList: string[] = []
  /** True when the group holds `*`. */
  all = false

  add (grant: string): void {
    if (grant === '*') this.all = true
    else if (grant.endsWith(':*')) this.#setPrefixes(() => this.prefixes.add(grant.slice(0, -1)))
    else this.exact.add(grant)
  }

  delete (grant: string): void {
    if (grant === '*') this.all = false
    else if (grant.endsWith(':*')) this.#setPrefixes(() => this.prefixes.delete(grant.slice(0, -1)))
    else this.exact.delete(grant)
  }

  /** Does a grant of this group match the concrete `permission`? O(segments), no allocation for few wildcards. */
  matches (permission: string): boolean {
    if (this.all || this.exact.has(permission)) return true
    const list = this.#prefixList
    if (list.length === 0) return false
    if (list.length <= PREFIX_SCAN_LIMIT) {
      // A prefix ends with ':' and a concrete permission has no empty segment, so a match is a proper prefix.
      for (let i = 0; i < list.length; i++) if (permission.startsWith(list[i])) return true
      return false
    }
    for (let i = permission.indexOf(':'); i !== -1; i = permission.indexOf(':', i + 1)) {
      if (this.prefixes.has(permission.slice(0, i + 1))) return true
    }
    return false
  }

  list (): string[] {
    const out = [...this.exact, ...this.#prefixList.map((p) => p + '*')]
    if (this.all) out.push('*')
    return out.sort()
  }

  #setPrefixes (mutate: () => void): void {
    mutate()
    this.#prefixList = [...this.prefixes]
  }
}

interface GroupState {
  name: string
  grants: GrantIndex
  users: Set<string>
}

export class TenantState {
  /** The revision this state reflects. */
  revision: number
  readonly #groups = new Map<string, GroupState>()
  /** user → the groups they belong to (a short array: the hot path iterates it). */
  readonly #userGroups = new Map<string, GroupState[]>()

  constructor (snapshot: TenantSnapshot) {
    this.revision = snapshot.revision
    for (const group of snapshot.groups) {
      const state = this.#createGroup(group.name)
      for (const permission of group.permissions) state.grants.add(permission)
      for (const user of group.users) this.#assign(state, user)
    }
  }

  /** The hot path. */
  check (user: string, permission: string): boolean {
    const groups = this.#userGroups.get(user)
    if (groups === undefined) return false
    for (let i = 0; i < groups.length; i++) {
      if (groups[i].grants.matches(permission)) return true
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
        for (const user of group.users) this.#unassign(group, user)
        this.#groups.delete(change.group)
        break
      case 'add-permission':
        (group ?? this.#createGroup(change.group)).grants.add(change.permission)
        break
      case 'remove-permission':
        group?.grants.delete(change.permission)
        break
      case 'assign-user':
        this.#assign(group ?? this.#createGroup(change.group), change.user)
        break
      case 'unassign-user':
        if (group !== undefined) this.#unassign(group, change.user)
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
    const groups = (this.#userGroups.get(user) ?? []).map((group) => group.name).sort()
    const permissions = new Set<string>()
    for (const name of groups) {
      for (const grant of this.#groups.get(name)!.grants.list()) permissions.add(grant)
    }
    return { groups, permissions: [...permissions].sort() }
  }

  #createGroup (name: string): GroupState {
    const state = { name, grants: new GrantIndex(), users: new Set<string>() }
    this.#groups.set(name, state)
    return state
  }

  #assign (group: GroupState, user: string): void {
    if (group.users.has(user)) return
    group.users.add(user)
    const groups = this.#userGroups.get(user)
    if (groups === undefined) this.#userGroups.set(user, [group])
    else groups.push(group)
  }

  #unassign (group: GroupState, user: string): void {
    if (!group.users.delete(user)) return
    const groups = this.#userGroups.get(user)
    if (groups === undefined) return
    const at = groups.indexOf(group)
    if (at !== -1) groups.splice(at, 1)
    if (groups.length === 0) this.#userGroups.delete(user)
  }
}
