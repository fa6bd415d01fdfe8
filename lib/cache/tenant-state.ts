/**
 * One tenant's policy in memory, indexed for the hot path: a check looks up the user's groups and
 * asks each group's grant index, so its cost depends on the user's groups and the permission's
 * segments, not on the tenant's size.
 *
 * The role hierarchy is resolved when a change is applied, never when a check is asked: each group
 * keeps the index of the grants it holds — its own and, transitively, those of the groups it
 * includes — so a check reads the same few lookups as in a flat tenant, whatever the hierarchy's
 * depth. Each held grant counts its supports (the group's own grant, and each included group
 * holding it), so a change moves only the grants whose count reaches or leaves zero, up through
 * the groups that include the one changed: its cost depends on the groups above it and the grants
 * it moves, not on the tenant's members.
 *
 * A TenantState is only ever mutated synchronously (one whole batch of changes at a time), so a
 * reader on the same event loop never sees half a change; a full reload builds a new state aside
 * and swaps it in.
 */
import { factHash, formatDigest, parseDigest } from '../digest.js'
import { findPath } from '../hierarchy.js'
import type { BatchChange, Change, GroupData, LoggedChange, TenantSnapshot } from '../model.js'

/** Up to this many wildcard grants per group are matched with `startsWith`, beyond it by slicing at each `:`. */
const PREFIX_SCAN_LIMIT = 8

/** One of 32 bits for the first character of `text`: a cheap filter of the prefixes a permission can start with. */
const firstCharBit = (text: string): number => 1 << (text.charCodeAt(0) & 31)

/** The grants of one group, split for matching: exact permissions, and wildcard prefixes. */
class GrantIndex {
  /** Concrete grants, e.g. `documents:read`. */
  readonly exact = new Set<string>()
  /** Wildcard grants by their prefix including the colon: `documents:*` → `documents:`. */
  readonly prefixes = new Set<string>()
  /** The same prefixes as an array, for an allocation-free scan when there are few. */
  #prefixList: string[] = []
  /** The {@link firstCharBit} of every prefix: a permission whose bit is not in it starts with none of them. */
  #prefixStarts = 0
  /** True when the group holds `*`. */
  all = false

  add (grant: string): void {
    if (grant === '*') this.all = true
    else if (grant.endsWith(':*')) this.#setPrefixes(() => this.prefixes.add(grant.slice(0, -1)))
    else this.exact.add(grant)
  }

  has (grant: string): boolean {
    if (grant === '*') return this.all
    return grant.endsWith(':*') ? this.prefixes.has(grant.slice(0, -1)) : this.exact.has(grant)
  }

  delete (grant: string): void {
    if (grant === '*') this.all = false
    else if (grant.endsWith(':*')) this.#setPrefixes(() => this.prefixes.delete(grant.slice(0, -1)))
    else this.exact.delete(grant)
  }

  /** Does a grant of this group match the concrete `permission`? O(segments), no allocation for few wildcards. */
  matches (permission: string): boolean {
    if (this.all || this.exact.has(permission)) return true
    // No wildcard grant, or none beginning with the permission's first character (the usual miss).
    // Stryker disable next-line ConditionalExpression: never skipping tests the prefixes anyway (speed only)
    if ((this.#prefixStarts & firstCharBit(permission)) === 0) return false
    const list = this.#prefixList
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
    this.#prefixStarts = this.#prefixList.reduce((bits, prefix) => bits | firstCharBit(prefix), 0)
  }
}

interface GroupState {
  /** Index in `#byId`, stored in the membership records. */
  id: number
  name: string
  /** The group's own grants. */
  grants: GrantIndex
  /** The grants its members hold through it: its own and those of the groups it includes, transitively. What a check reads. */
  held: GrantIndex
  /** Each held grant's supports: 1 for the group's own grant, plus 1 per included group holding it. */
  support: Map<string, number>
  /** The groups it includes. */
  includes: Set<GroupState>
  /** The groups including it. */
  includedBy: Set<GroupState>
  users: Set<string>
  /** `users` sorted, built by the first listing or lookup that needs it and dropped by the next (un)assignment. */
  sortedUsers: string[] | undefined
}

/** A page of sorted keys: those after the cursor key, and whether more follow the last. */
export interface KeyPage<T = string> {
  items: T[]
  /** The last item's key when more follow it, else undefined. */
  last: string | undefined
}

/** A user holding a permission, with the groups (sorted) through which they hold it. */
export interface Holder {
  user: string
  /** The user's own groups through which they hold it, sorted. */
  groups: string[]
  /**
   * For each of `groups` (aligned), the chain of inclusions it holds the permission through: the
   * group, the group it includes, …, the group granting it — `[group]` when it grants it itself.
   * The shortest such chain (the first in name order among equally short ones).
   */
  chains: string[][]
}

/** A grant a user holds, and the chain of groups it comes through: the user's group, …, the group granting it. */
export interface HeldGrant {
  permission: string
  chain: string[]
}

/** Orders groups by name. */
// Stryker disable next-line EqualityOperator: equivalent — a tenant's group names are unique, so no two compare equal
const byName = (a: GroupState, b: GroupState): number => a.name < b.name ? -1 : 1

/** The names of `groups`, sorted. */
function names (groups: Iterable<GroupState>): string[] {
  return [...groups].map((group) => group.name).sort()
}

/** Index of the first key of `sorted` greater than `after` (0 without one): a binary search. */
function firstAfter (sorted: readonly string[], after: string | undefined): number {
  if (after === undefined) return 0
  let low = 0
  let high = sorted.length
  while (low < high) {
    const mid = (low + high) >>> 1
    if (sorted[mid] <= after) low = mid + 1
    else high = mid
  }
  return low
}

/** Up to `limit` keys of `sorted` after `after`. */
function pageOf (sorted: readonly string[], after: string | undefined, limit: number): KeyPage {
  const start = firstAfter(sorted, after)
  const items = sorted.slice(start, start + limit)
  return { items, last: start + limit < sorted.length ? items[items.length - 1] : undefined }
}

/**
 * The grants that hold `permission`, as the grant index keys them: the permission itself, each
 * wildcard on a proper prefix of it, and `*`. A wildcard asked for (`documents:*`) is held by
 * itself, by a shorter wildcard (`*` included) — not by the concrete grants under it.
 */
export function grantsHolding (permission: string): string[] {
  if (permission === '*') return ['*']
  const base = permission.endsWith(':*') ? permission.slice(0, -2) : permission
  const keys = [permission]
  for (let i = base.indexOf(':'); i !== -1; i = base.indexOf(':', i + 1)) keys.push(base.slice(0, i + 1) + '*')
  keys.push('*')
  return keys
}

/** Slots of a membership record before its group ids: the count in use and the capacity. */
const HEADER = 2

export class TenantState {
  /** The revision this state reflects. */
  revision: number
  /**
   * Whether the contents are known to be the database's at `revision`: true for a state built from a
   * snapshot, kept by changes read from the database (changelog deltas, own writes whose digest
   * matched), false once a change a peer's notice carried was applied — until anti-entropy finds the
   * digest equal to the database's.
   */
  verified = true
  /** When the state was built (`performance.now()`): reloads of a tenant are spaced from it. */
  readonly builtAt = performance.now()
  /** The digest of the contents (lib/digest.ts), kept up to date by every change. */
  #digest: bigint
  readonly #groups = new Map<string, GroupState>()
  /** The group names sorted, built by the first listing that needs it and dropped by the next group created or deleted. */
  #sortedGroups: string[] | undefined
  /**
   * The reverse grant index: each grant (`documents:read`, `documents:*`, `*`) → the groups holding
   * it. A reverse lookup reads the few grants that can hold a permission ({@link grantsHolding})
   * instead of asking every group.
   */
  readonly #grantHolders = new Map<string, Set<GroupState>>()
  /** Groups by id; a deleted group leaves a hole whose id `#freeIds` hands out again. */
  readonly #byId: Array<GroupState | undefined> = []
  readonly #freeIds: number[] = []
  /**
   * The user index, laid out for the hot path: user → offset of the user's membership record in
   * `#records`, one typed array holding every record as [count, capacity, group id…]. A check does
   * one map lookup, whose value is a small integer stored in the map itself, then reads contiguous
   * memory — no per-user object (on a 100 k-member tenant, chasing a per-user array of group
   * objects cost a cache miss per check). A record that outgrows its capacity moves to the end;
   * the space left behind is reclaimed by compacting once it exceeds the records in use.
   */
  readonly #offsets = new Map<string, number>()
  #records = new Int32Array(64)
  /** End of the last record. */
  #end = 0
  /** Slots of `#records` below `#end` no record uses any more. */
  #garbage = 0

  constructor (snapshot: TenantSnapshot) {
    this.revision = snapshot.revision
    this.#digest = parseDigest(snapshot.digest)
    // In two passes, so each user's record is sized once and the records lie in one array:
    // count each user's groups, lay the records out, then fill them.
    const offsets = this.#offsets
    for (const group of snapshot.groups) {
      const state = this.#createGroup(group.name)
      for (const permission of group.permissions) this.#grant(state, permission)
      for (const user of group.users) {
        if (state.users.has(user)) continue
        state.users.add(user)
        offsets.set(user, (offsets.get(user) ?? 0) + 1)
      }
    }
    // The inclusions once every group and grant is in: each moves the grants it brings once. (A
    // snapshot names only groups it holds; a name it does not hold includes nothing.)
    for (const group of snapshot.groups) {
      const state = this.#groups.get(group.name)!
      // Stryker disable next-line ArrayDeclaration: equivalent — a name that is not one of the snapshot's groups is skipped below (only a group bearing Stryker's placeholder name would tell)
      for (const name of group.includes ?? []) {
        const included = this.#groups.get(name)
        if (included !== undefined) this.#include(state, included)
      }
    }
    let end = 0
    for (const [user, count] of offsets) {
      offsets.set(user, end)
      end += HEADER + count
    }
    const records = this.#records = new Int32Array(Math.max(64, end + (end >> 3)))
    for (const state of this.#groups.values()) {
      for (const user of state.users) {
        const at = offsets.get(user)!
        records[at + HEADER + records[at]++] = state.id
        records[at + 1]++
      }
    }
    this.#end = end
  }

  /** The hot path. */
  check (user: string, permission: string): boolean {
    const at = this.#offsets.get(user)
    if (at === undefined) return false
    const records = this.#records
    const byId = this.#byId
    for (let i = at + HEADER, end = i + records[at]; i < end; i++) {
      if (byId[records[i]]!.held.matches(permission)) return true
    }
    return false
  }

  /** The digest of the contents as they are now. */
  get digest (): string {
    return formatDigest(this.#digest)
  }

  /** The digest the contents would have after `change` (or a batch's changes, in order), without applying it. */
  digestAfter (change: Change | BatchChange): string {
    return formatDigest(this.#digest + (change.op === 'batch' ? this.#batchDelta(change.changes) : this.#delta(change)))
  }

  /** Number of groups, for stats. */
  get size (): number {
    return this.#groups.size
  }

  /**
   * Slots (4 bytes each) of the one array holding every user's membership record: what churn
   * (assign, unassign, again) may grow. Space left behind is reclaimed by compacting, so it stays
   * within a small multiple of the records in use.
   */
  get recordSlots (): number {
    return this.#records.length
  }

  /**
   * Applies changelog entries in order — a batch entry's changes one by one, at its one revision.
   * Entries at or below the current revision are skipped; a gap stops the batch and returns false
   * (the caller reloads). Synchronous, so atomic for readers.
   */
  applyAll (changes: readonly LoggedChange[]): boolean {
    for (const change of changes) {
      if (change.revision <= this.revision) continue
      if (change.revision !== this.revision + 1) return false
      if (change.op === 'batch') {
        for (const one of change.changes) this.apply(one)
      } else {
        this.apply(change)
      }
      this.revision = change.revision
    }
    return true
  }

  /** Applies one change's effect (idempotent) and updates the digest, without touching the revision. */
  apply (change: Change): void {
    this.#digest = BigInt.asUintN(128, this.#digest + this.#delta(change))
    const group = this.#groups.get(change.group)
    switch (change.op) {
      case 'create-group':
        if (group === undefined) this.#createGroup(change.group)
        break
      case 'delete-group':
        if (group === undefined) break
        for (const included of [...group.includes]) this.#exclude(group, included)
        for (const including of [...group.includedBy]) this.#exclude(including, group)
        for (const user of group.users) this.#unassign(group, user)
        for (const grant of group.grants.list()) this.#revoke(group, grant)
        this.#groups.delete(change.group)
        this.#sortedGroups = undefined
        this.#byId[group.id] = undefined
        this.#freeIds.push(group.id)
        break
      case 'add-permission':
        this.#grant(group ?? this.#createGroup(change.group), change.permission)
        break
      case 'remove-permission':
        if (group !== undefined) this.#revoke(group, change.permission)
        break
      case 'assign-user':
        this.#assign(group ?? this.#createGroup(change.group), change.user)
        break
      case 'unassign-user':
        if (group !== undefined) this.#unassign(group, change.user)
        break
      case 'include-group': {
        const including = group ?? this.#createGroup(change.group)
        this.#include(including, this.#groups.get(change.includes) ?? this.#createGroup(change.includes))
        break
      }
      case 'exclude-group': {
        const included = this.#groups.get(change.includes)
        if (group !== undefined && included !== undefined) this.#exclude(group, included)
        break
      }
    }
  }

  /** The whole tenant, as plain data (sorted). */
  view (): Array<Required<GroupData>> {
    return [...this.#groups.keys()].sort().map((name) => {
      const group = this.#groups.get(name)!
      return { name, permissions: group.grants.list(), users: [...group.users].sort(), includes: names(group.includes) }
    })
  }

  /**
   * One user's groups, the grants they hold through them (sorted, deduplicated, inherited ones
   * included), and each of those grants with the chain of groups it comes through (the shortest,
   * the first in name order among equally short ones).
   */
  userView (user: string): { groups: string[], permissions: string[], grants: HeldGrant[] } {
    const own: GroupState[] = []
    const at = this.#offsets.get(user)
    if (at !== undefined) {
      for (let i = at + HEADER; i < at + HEADER + this.#records[at]; i++) own.push(this.#byId[this.#records[i]]!)
    }
    own.sort(byName)
    // Breadth first down the inclusions from the user's groups: each group reached first by its shortest chain.
    const chains = new Map<GroupState, string[]>(own.map((group) => [group, [group.name]]))
    const grants = new Map<string, string[]>()
    for (const [group, chain] of chains) {
      for (const grant of group.grants.list()) if (!grants.has(grant)) grants.set(grant, chain)
      for (const included of [...group.includes].sort(byName)) {
        if (!chains.has(included)) chains.set(included, [...chain, included.name])
      }
    }
    const permissions = [...grants.keys()].sort()
    return { groups: own.map((group) => group.name), permissions, grants: permissions.map((permission) => ({ permission, chain: grants.get(permission)! })) }
  }

  /** Up to `limit` group names after `after`, sorted. */
  groupPage (after: string | undefined, limit: number): KeyPage {
    this.#sortedGroups ??= [...this.#groups.keys()].sort()
    return pageOf(this.#sortedGroups, after, limit)
  }

  /** Up to `limit` members of `group` after `after`, sorted; undefined when the group does not exist. */
  userPage (group: string, after: string | undefined, limit: number): KeyPage | undefined {
    const state = this.#groups.get(group)
    return state === undefined ? undefined : pageOf(this.#sorted(state), after, limit)
  }

  /** Up to `limit` grants of `group` after `after`, sorted; undefined when the group does not exist. */
  grantPage (group: string, after: string | undefined, limit: number): KeyPage | undefined {
    const state = this.#groups.get(group)
    return state === undefined ? undefined : pageOf(state.grants.list(), after, limit)
  }

  /**
   * Reverse lookup: up to `limit` users after `after` (sorted) holding `permission` (a concrete
   * permission or a wildcard: see {@link grantsHolding}), each with the groups through which they
   * hold it and the chain of inclusions each holds it through. The groups granting it come from the
   * reverse grant index, the groups including them (transitively) from the inclusions; their sorted
   * members are merged from the cursor on, so a page costs O(segments + k·log n + limit·k) for k
   * holding groups — not a scan of the tenant's users or grants (a group's sorted members are
   * rebuilt after it changed, once).
   */
  holderPage (permission: string, after: string | undefined, limit: number): KeyPage<Holder> {
    const granting = new Set<GroupState>()
    for (const grant of grantsHolding(permission)) {
      for (const group of this.#grantHolders.get(grant) ?? []) granting.add(group)
    }
    // Breadth first up the inclusions: each group holding it with its shortest chain down to a granting group.
    const chains = new Map<GroupState, string[]>([...granting].sort(byName).map((group) => [group, [group.name]]))
    for (const [group, chain] of chains) {
      for (const including of [...group.includedBy].sort(byName)) {
        if (!chains.has(including)) chains.set(including, [including.name, ...chain])
      }
    }
    const lists = [...chains].map(([group, chain]) => {
      const users = this.#sorted(group)
      return { name: group.name, chain, users, at: firstAfter(users, after) }
    })
    const items: Holder[] = []
    for (;;) {
      let next: string | undefined
      for (const list of lists) {
        // Stryker disable next-line ConditionalExpression,EqualityOperator: equivalent — past a list's end the name read is undefined, never below a name, and leaves an undefined `next` undefined; an equal name is the same `next`
        if (list.at < list.users.length && (next === undefined || list.users[list.at] < next)) next = list.users[list.at]
      }
      if (next === undefined) return { items, last: undefined }
      if (items.length === limit) return { items, last: items[items.length - 1].user }
      const through: Array<{ name: string, chain: string[] }> = []
      for (const list of lists) {
        if (list.users[list.at] === next) {
          through.push(list)
          list.at++
        }
      }
      // Stryker disable next-line EqualityOperator: equivalent — group names are unique
      through.sort((a, b) => a.name < b.name ? -1 : 1)
      items.push({ user: next, groups: through.map((list) => list.name), chains: through.map((list) => list.chain) })
    }
  }

  /** What `change` adds to the digest: the hashes of the facts it would add minus those it would remove. */
  #delta (change: Change): bigint {
    const name = change.group
    const group = this.#groups.get(name)
    const created = group === undefined ? factHash({ group: name }) : 0n
    switch (change.op) {
      case 'create-group':
        return created
      case 'delete-group': {
        if (group === undefined) return 0n
        let delta = -factHash({ group: name })
        for (const permission of group.grants.list()) delta -= factHash({ group: name, permission })
        for (const user of group.users) delta -= factHash({ group: name, user })
        for (const included of group.includes) delta -= factHash({ group: name, includes: included.name })
        for (const including of group.includedBy) delta -= factHash({ group: including.name, includes: name })
        return delta
      }
      case 'add-permission':
        return group?.grants.has(change.permission) === true ? 0n : created + factHash({ group: name, permission: change.permission })
      case 'remove-permission':
        return group?.grants.has(change.permission) === true ? -factHash({ group: name, permission: change.permission }) : 0n
      case 'assign-user':
        return group?.users.has(change.user) === true ? 0n : created + factHash({ group: name, user: change.user })
      case 'unassign-user':
        return group?.users.has(change.user) === true ? -factHash({ group: name, user: change.user }) : 0n
      case 'include-group': {
        const { includes } = change
        const included = this.#groups.get(includes)
        const both = created + (included === undefined && includes !== name ? factHash({ group: includes }) : 0n)
        // As `apply` does: a group never includes itself, nor a group including it (see #include).
        if (includes === name || (group !== undefined && included !== undefined && (group.includes.has(included) || this.#reaches(included, group)))) return both
        return both + factHash({ group: name, includes })
      }
      case 'exclude-group': {
        const included = this.#groups.get(change.includes)
        return included !== undefined && group?.includes.has(included) === true ? -factHash({ group: name, includes: change.includes }) : 0n
      }
    }
  }

  /**
   * What a batch's changes, applied in order, add to the digest — as {@link apply} would, change by
   * change — computed on an overlay of the groups they touch, without changing anything.
   */
  #batchDelta (changes: readonly Change[]): bigint {
    /** A touched group: whether it exists, its grants and users changed so far, and whether its own were dropped. */
    interface Overlay { exists: boolean, cleared: boolean, grants: Map<string, boolean>, users: Map<string, boolean> }
    const overlays = new Map<string, Overlay>()
    /** Inclusions changed so far, by `group\0includes`; a deleted group's are each set false. */
    const edges = new Map<string, boolean>()
    const edgeKey = (group: string, includes: string) => `${group}\0${includes}`
    const hasEdge = (group: string, includes: string) => edges.get(edgeKey(group, includes)) ??
      (this.#groups.get(group)?.includes.has(this.#groups.get(includes)!) === true)
    const overlayOf = (name: string): Overlay => {
      let overlay = overlays.get(name)
      if (overlay === undefined) overlays.set(name, overlay = { exists: this.#groups.has(name), cleared: false, grants: new Map(), users: new Map() })
      return overlay
    }
    const create = (name: string) => {
      const overlay = overlayOf(name)
      if (overlay.exists) return 0n
      overlay.exists = true
      return factHash({ group: name })
    }
    let delta = 0n
    for (const change of changes) {
      const name = change.group
      const base = this.#groups.get(name)
      const overlay = overlayOf(name)
      const hasGrant = (permission: string) => overlay.grants.get(permission) ?? (!overlay.cleared && base?.grants.has(permission) === true)
      const hasUser = (user: string) => overlay.users.get(user) ?? (!overlay.cleared && base?.users.has(user) === true)
      switch (change.op) {
        case 'create-group':
          delta += create(name)
          break
        case 'delete-group': {
          if (!overlay.exists) break
          delta -= factHash({ group: name })
          const grants = new Set(overlay.cleared || base === undefined ? [] : base.grants.list())
          const users = new Set(overlay.cleared || base === undefined ? [] : base.users)
          for (const [permission, present] of overlay.grants) present ? grants.add(permission) : grants.delete(permission)
          for (const [user, present] of overlay.users) present ? users.add(user) : users.delete(user)
          for (const permission of grants) delta -= factHash({ group: name, permission })
          for (const user of users) delta -= factHash({ group: name, user })
          // Its inclusions both ways: the database's still present, and those the batch made.
          const touching = new Set<string>()
          for (const included of base?.includes ?? []) touching.add(edgeKey(name, included.name))
          for (const including of base?.includedBy ?? []) touching.add(edgeKey(including.name, name))
          for (const key of edges.keys()) {
            const [group, includes] = key.split('\0')
            if (group === name || includes === name) touching.add(key)
          }
          for (const key of touching) {
            const [group, includes] = key.split('\0')
            if (!hasEdge(group, includes)) continue
            delta -= factHash({ group, includes })
            edges.set(key, false)
          }
          overlays.set(name, { exists: false, cleared: true, grants: new Map(), users: new Map() })
          break
        }
        case 'add-permission':
          if (overlay.exists && hasGrant(change.permission)) break
          delta += create(name) + factHash({ group: name, permission: change.permission })
          overlay.grants.set(change.permission, true)
          break
        case 'remove-permission':
          if (!overlay.exists || !hasGrant(change.permission)) break
          delta -= factHash({ group: name, permission: change.permission })
          overlay.grants.set(change.permission, false)
          break
        case 'assign-user':
          if (overlay.exists && hasUser(change.user)) break
          delta += create(name) + factHash({ group: name, user: change.user })
          overlay.users.set(change.user, true)
          break
        case 'unassign-user':
          if (!overlay.exists || !hasUser(change.user)) break
          delta -= factHash({ group: name, user: change.user })
          overlay.users.set(change.user, false)
          break
        case 'include-group': {
          const { includes } = change
          delta += create(name) + create(includes)
          // A group never includes itself. A longer cycle is not predicted: the store refuses every
          // cycle, so none is ever logged (were one to come, the digest would differ and the cache reload).
          if (includes === name || hasEdge(name, includes)) break
          delta += factHash({ group: name, includes })
          edges.set(edgeKey(name, includes), true)
          break
        }
        case 'exclude-group':
          if (!hasEdge(name, change.includes)) break
          delta -= factHash({ group: name, includes: change.includes })
          edges.set(edgeKey(name, change.includes), false)
          break
      }
    }
    return delta
  }

  #createGroup (name: string): GroupState {
    const id = this.#freeIds.pop() ?? this.#byId.length
    const state: GroupState = {
      id,
      name,
      grants: new GrantIndex(),
      held: new GrantIndex(),
      support: new Map(),
      includes: new Set(),
      includedBy: new Set(),
      users: new Set<string>(),
      sortedUsers: undefined
    }
    this.#groups.set(name, state)
    this.#byId[id] = state
    this.#sortedGroups = undefined
    return state
  }

  /** The group's members, sorted (cached until the next change of its members). */
  #sorted (group: GroupState): string[] {
    group.sortedUsers ??= [...group.users].sort()
    return group.sortedUsers
  }

  #grant (group: GroupState, grant: string): void {
    if (group.grants.has(grant)) return
    group.grants.add(grant)
    this.#gain(group, grant)
    let holders = this.#grantHolders.get(grant)
    if (holders === undefined) this.#grantHolders.set(grant, holders = new Set())
    holders.add(group)
  }

  #revoke (group: GroupState, grant: string): void {
    if (!group.grants.has(grant)) return
    group.grants.delete(grant)
    this.#lose(group, grant)
    const holders = this.#grantHolders.get(grant)!
    holders.delete(group)
    // Stryker disable next-line ConditionalExpression: memory only — an empty set left behind answers every lookup as no entry does
    if (holders.size === 0) this.#grantHolders.delete(grant)
  }

  /**
   * `group` gains a support for `grant`: a grant it starts holding moves up to every group including
   * it, and on while it is new there (a worklist, not recursion: a hierarchy may be deep).
   */
  #gain (group: GroupState, grant: string): void {
    const pending = [group]
    for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
      const count = next.support.get(grant) ?? 0
      next.support.set(grant, count + 1)
      if (count > 0) continue
      next.held.add(grant)
      for (const including of next.includedBy) pending.push(including)
    }
  }

  /** `group` loses a support for `grant`: a grant it stops holding goes from every group including it that held it only so. */
  #lose (group: GroupState, grant: string): void {
    const pending = [group]
    for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
      const count = next.support.get(grant)!
      if (count > 1) {
        next.support.set(grant, count - 1)
        continue
      }
      next.support.delete(grant)
      next.held.delete(grant)
      for (const including of next.includedBy) pending.push(including)
    }
  }

  /**
   * `group` includes `included`: its held grants gain a support each. Ignored when present, and when
   * it would close a cycle (`included` reaches `group`, or is `group`) — the store refuses those, so
   * none comes from it; a custom store letting one through would leave the digest differing from
   * the database's, and the state reloaded (with the cycle ignored again).
   */
  #include (group: GroupState, included: GroupState): void {
    if (group.includes.has(included) || this.#reaches(included, group)) return
    group.includes.add(included)
    included.includedBy.add(group)
    for (const grant of included.support.keys()) this.#gain(group, grant)
  }

  #exclude (group: GroupState, included: GroupState): void {
    if (!group.includes.delete(included)) return
    included.includedBy.delete(group)
    for (const grant of included.support.keys()) this.#lose(group, grant)
  }

  /** Whether `to` is `from` or a group `from` includes, transitively. */
  #reaches (from: GroupState, to: GroupState): boolean {
    return findPath(from, to, (group) => group.includes) !== undefined
  }

  #assign (group: GroupState, user: string): void {
    if (group.users.has(user)) return
    group.users.add(user)
    group.sortedUsers = undefined
    let at = this.#offsets.get(user)
    if (at === undefined) {
      at = this.#allocate(2)
      this.#offsets.set(user, at)
    } else if (this.#records[at] === this.#records[at + 1]) {
      // Full: move the record to the end with twice the room (allocating may compact: look it up again).
      const count = this.#records[at]
      const moved = this.#allocate(2 * count)
      at = this.#offsets.get(user)!
      this.#records.copyWithin(moved + HEADER, at + HEADER, at + HEADER + count)
      this.#records[moved] = count
      this.#garbage += HEADER + count
      this.#offsets.set(user, moved)
      at = moved
    }
    const records = this.#records
    records[at + HEADER + records[at]++] = group.id
  }

  #unassign (group: GroupState, user: string): void {
    if (!group.users.delete(user)) return
    group.sortedUsers = undefined
    const at = this.#offsets.get(user)
    if (at === undefined) return
    const records = this.#records
    const last = at + HEADER + records[at] - 1
    for (let i = at + HEADER; i <= last; i++) {
      if (records[i] === group.id) {
        records[i] = records[last]
        records[at]--
        break
      }
    }
    if (records[at] === 0) {
      this.#offsets.delete(user)
      this.#garbage += HEADER + records[at + 1]
    }
  }

  /**
   * Appends an empty record of `capacity` and returns its offset. Grows the array by
   * doubling, and compacts it first when more than half of it is garbage, so each is amortised O(1)
   * per change.
   */
  #allocate (capacity: number): number {
    if (this.#end + HEADER + capacity > this.#records.length) {
      if (this.#garbage > this.#end - this.#garbage) this.#compact()
      if (this.#end + HEADER + capacity > this.#records.length) {
        const grown = new Int32Array(2 * (this.#end + HEADER + capacity))
        grown.set(this.#records.subarray(0, this.#end))
        this.#records = grown
      }
    }
    const at = this.#end
    this.#records[at] = 0
    this.#records[at + 1] = capacity
    this.#end += HEADER + capacity
    return at
  }

  /** Copies the records in use to the front of the array, in index order. */
  #compact (): void {
    const from = this.#records
    const to = new Int32Array(from.length)
    let end = 0
    for (const [user, at] of this.#offsets) {
      const size = HEADER + from[at + 1]
      to.set(from.subarray(at, at + size), end)
      this.#offsets.set(user, end)
      end += size
    }
    this.#records = to
    this.#end = end
    this.#garbage = 0
  }
}
