/**
 * One tenant's policy in memory, indexed for the hot path: a check looks up the user's groups and
 * asks each group's grant index, so its cost depends on the user's groups and the permission's
 * segments, not on the tenant's size.
 *
 * A TenantState is only ever mutated synchronously (one whole batch of changes at a time), so a
 * reader on the same event loop never sees half a change; a full reload builds a new state aside
 * and swaps it in.
 */
import { factHash, formatDigest, parseDigest } from '../digest.js'
import type { BatchChange, Change, GroupData, LoggedChange, TenantSnapshot } from '../model.js'

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
  /** Index in `#byId`, stored in the membership records. */
  id: number
  name: string
  grants: GrantIndex
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
  groups: string[]
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
      if (byId[records[i]]!.grants.matches(permission)) return true
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
    const groups: string[] = []
    const at = this.#offsets.get(user)
    if (at !== undefined) {
      for (let i = at + HEADER; i < at + HEADER + this.#records[at]; i++) groups.push(this.#byId[this.#records[i]]!.name)
    }
    groups.sort()
    const permissions = new Set<string>()
    for (const name of groups) {
      for (const grant of this.#groups.get(name)!.grants.list()) permissions.add(grant)
    }
    return { groups, permissions: [...permissions].sort() }
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
   * hold it. The groups come from the reverse grant index; their sorted members are merged from the
   * cursor on, so a page costs O(segments + k·log n + limit·k) for k holding groups — not a scan of
   * the tenant's users or grants (a group's sorted members are rebuilt after it changed, once).
   */
  holderPage (permission: string, after: string | undefined, limit: number): KeyPage<Holder> {
    const groups = new Set<GroupState>()
    for (const grant of grantsHolding(permission)) {
      for (const group of this.#grantHolders.get(grant) ?? []) groups.add(group)
    }
    const lists = [...groups].map((group) => {
      const users = this.#sorted(group)
      return { name: group.name, users, at: firstAfter(users, after) }
    })
    const items: Holder[] = []
    for (;;) {
      let next: string | undefined
      for (const list of lists) {
        if (list.at < list.users.length && (next === undefined || list.users[list.at] < next)) next = list.users[list.at]
      }
      if (next === undefined) return { items, last: undefined }
      if (items.length === limit) return { items, last: items[items.length - 1].user }
      const through: string[] = []
      for (const list of lists) {
        if (list.users[list.at] === next) {
          through.push(list.name)
          list.at++
        }
      }
      items.push({ user: next, groups: through.sort() })
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
    let delta = 0n
    for (const change of changes) {
      const name = change.group
      const base = this.#groups.get(name)
      let o = overlays.get(name)
      if (o === undefined) overlays.set(name, o = { exists: base !== undefined, cleared: false, grants: new Map(), users: new Map() })
      const overlay = o
      const hasGrant = (permission: string) => overlay.grants.get(permission) ?? (!overlay.cleared && base?.grants.has(permission) === true)
      const hasUser = (user: string) => overlay.users.get(user) ?? (!overlay.cleared && base?.users.has(user) === true)
      const create = () => {
        if (overlay.exists) return 0n
        overlay.exists = true
        return factHash({ group: name })
      }
      switch (change.op) {
        case 'create-group':
          delta += create()
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
          overlays.set(name, { exists: false, cleared: true, grants: new Map(), users: new Map() })
          break
        }
        case 'add-permission':
          if (overlay.exists && hasGrant(change.permission)) break
          delta += create() + factHash({ group: name, permission: change.permission })
          overlay.grants.set(change.permission, true)
          break
        case 'remove-permission':
          if (!overlay.exists || !hasGrant(change.permission)) break
          delta -= factHash({ group: name, permission: change.permission })
          overlay.grants.set(change.permission, false)
          break
        case 'assign-user':
          if (overlay.exists && hasUser(change.user)) break
          delta += create() + factHash({ group: name, user: change.user })
          overlay.users.set(change.user, true)
          break
        case 'unassign-user':
          if (!overlay.exists || !hasUser(change.user)) break
          delta -= factHash({ group: name, user: change.user })
          overlay.users.set(change.user, false)
          break
      }
    }
    return delta
  }

  #createGroup (name: string): GroupState {
    const id = this.#freeIds.pop() ?? this.#byId.length
    const state: GroupState = { id, name, grants: new GrantIndex(), users: new Set<string>(), sortedUsers: undefined }
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
    group.grants.add(grant)
    let holders = this.#grantHolders.get(grant)
    if (holders === undefined) this.#grantHolders.set(grant, holders = new Set())
    holders.add(group)
  }

  #revoke (group: GroupState, grant: string): void {
    group.grants.delete(grant)
    const holders = this.#grantHolders.get(grant)
    if (holders === undefined) return
    holders.delete(group)
    if (holders.size === 0) this.#grantHolders.delete(grant)
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
