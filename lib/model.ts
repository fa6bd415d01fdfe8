/**
 * The policy model (README.md, "Policy model"): identifiers, permissions, changes and snapshots, shared by the
 * store, the cache, the broadcaster and the routes.
 */
import { InvalidInputError, RevisionConflictError } from './errors.js'
import { assertNoCycle } from './hierarchy.js'

/** Tenant, group and user identifiers. */
export const IDENTIFIER_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$'
/** A grant: `segment(:segment)*`, each segment `[A-Za-z0-9._-]+`, or a final `*`. */
export const GRANT_PATTERN = '^(\\*|[A-Za-z0-9._-]+(:[A-Za-z0-9._-]+)*(:\\*)?)$'
/** A checked permission: concrete, no `*`. */
export const PERMISSION_PATTERN = '^[A-Za-z0-9._-]+(:[A-Za-z0-9._-]+)*$'
export const PERMISSION_MAX_LENGTH = 256

const identifierRe = new RegExp(IDENTIFIER_PATTERN)
const grantRe = new RegExp(GRANT_PATTERN)

/** Characters of a permission segment, by char code: the hot path validates without a regex. */
const SEGMENT_CHAR = new Uint8Array(128)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-') SEGMENT_CHAR[c.charCodeAt(0)] = 1
const COLON = 58

/** The writes, named as on the wire (`operation` in a webhook notice): the six of the flat model and the two of the role hierarchy. */
export const OPERATIONS = ['create-group', 'delete-group', 'add-permission', 'remove-permission', 'assign-user', 'unassign-user', 'include-group', 'exclude-group'] as const
export type Operation = typeof OPERATIONS[number]

/** One write, as the store applies it and the changelog records it. */
export type Change =
  | { op: 'create-group', group: string }
  | { op: 'delete-group', group: string }
  | { op: 'add-permission', group: string, permission: string }
  | { op: 'remove-permission', group: string, permission: string }
  | { op: 'assign-user', group: string, user: string }
  | { op: 'unassign-user', group: string, user: string }
  /** Members of `group` hold every grant of `includes`, transitively (role hierarchy). */
  | { op: 'include-group', group: string, includes: string }
  | { op: 'exclude-group', group: string, includes: string }

/**
 * The effective changes of one batch write, committed together at one revision and logged as one
 * changelog entry: replayed in order, change by change.
 */
export interface BatchChange {
  op: 'batch'
  /** The changes of the batch that had an effect, in the batch's order (at least two). */
  changes: Change[]
}

/** A change as read back from the changelog: one write's change, or a batch's. */
export type LoggedChange = (Change | BatchChange) & { revision: number }

/** What makes a write conditional. */
export interface WriteOptions {
  /**
   * Write only if the tenant is at this revision (0: never written), checked under the lock that
   * serialises the tenant's writes; otherwise nothing is written and the write rejects with 409
   * FST_POLICY_CACHE_REVISION_CONFLICT carrying the current revision.
   */
  ifRevision?: number | undefined
  /**
   * Who makes the write, recorded with its changelog entry (the audit feed, `changes`): 1 to
   * {@link ACTOR_MAX_LENGTH} characters, no control characters. Through the routes it is the `user`
   * of the request's identity (the `identify` option); absent, the entry's actor is null.
   */
  actor?: string | undefined
}

/** Longest `actor` of a write (characters, as UTF-16 code units). */
export const ACTOR_MAX_LENGTH = 255

/** One entry of a tenant's audit feed: a logged change with who made it, from where, and when. */
export interface AuditEntry {
  revision: number
  /** The change, or a batch's effective changes, as {@link LoggedChange} without `revision`. */
  change: Change | BatchChange
  /** The serverId of the instance that wrote it. */
  origin: string
  /** Who made it (the write's `actor`), null when the write named none. */
  actor: string | null
  /**
   * When its transaction wrote it, epoch ms of the **database's** clock (entries written before the
   * audit columns existed carry the clock of the instance that wrote them).
   */
  committedAt: number
}

/** A page of a tenant's audit feed, read consistently (one transaction). */
export interface ChangesPage {
  /** The tenant's current revision (0: never written). */
  revision: number
  /** The oldest revision the changelog still holds for the tenant; null when it holds none. */
  oldestRevision: number | null
  /** The entries after the asked revision, in order, at most the asked limit. */
  entries: AuditEntry[]
}

/** One group of a tenant, as stored. */
export interface GroupData {
  name: string
  permissions: string[]
  users: string[]
  /**
   * The groups this group includes (sorted): its members hold their grants too, transitively.
   * Absent means none (a store written before the role hierarchy); the views always list it.
   */
  includes?: string[]
}

/** A tenant's whole policy at one revision, with the digest of those contents (lib/digest.ts). */
export interface TenantSnapshot {
  revision: number
  groups: GroupData[]
  /** The digest of `groups` (32 hex digits; `EMPTY_DIGEST` for a tenant never written). */
  digest: string
  /**
   * Whether the tenant exists: written, and not deleted since its latest effective write. Absent
   * (a store that does not say): `revision > 0`.
   */
  exists?: boolean
}

/**
 * What a write did. `revision` and `digest` are the tenant's after it (unchanged when `changed` is
 * false).
 */
export interface WriteResult {
  revision: number
  changed: boolean
  /** The digest of the tenant's contents at `revision`. */
  digest: string
  /** For a batch: whether each of its changes had an effect, aligned with the changes. Absent for a single change. */
  effects?: boolean[]
}

/** A tenant that exists (written, and not deleted since), as the tenant listing names it. */
export interface TenantSummary {
  tenant: string
  /** Its current revision in the database (above 0). */
  revision: number
}

/** The format number of the export document this version writes and reads. */
export const EXPORT_FORMAT = 1

/**
 * A tenant's whole policy as one document: what `exportTenant` answers and `importTenant` takes
 * (`tenant` and `revision` optional there: see `ImportDocument`).
 */
export interface TenantDocument {
  tenant: string
  /** The revision it was read at. */
  revision: number
  /** Sorted by name, each group's permissions and users sorted. */
  groups: GroupData[]
  format: typeof EXPORT_FORMAT
}

/** Where a tenant is in the database: its revision and the digest of its contents there. */
export interface TenantVersion {
  revision: number
  digest: string
}

export function isIdentifier (value: unknown): value is string {
  return typeof value === 'string' && identifierRe.test(value)
}

export function isGrant (value: unknown): value is string {
  return typeof value === 'string' && value.length <= PERMISSION_MAX_LENGTH && grantRe.test(value)
}

/** Whether `value` matches PERMISSION_PATTERN within the length limit: one scan, no regex, no allocation. */
export function isPermission (value: unknown): value is string {
  if (typeof value !== 'string' || value.length > PERMISSION_MAX_LENGTH) return false
  let segment = 0
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === COLON) {
      if (segment === 0) return false
      segment = 0
    } else if (c < 128 && SEGMENT_CHAR[c] === 1) {
      segment++
    } else {
      return false
    }
  }
  return segment > 0
}

export function assertIdentifier (kind: 'tenant' | 'group' | 'user' | 'includes', value: unknown): asserts value is string {
  if (!isIdentifier(value)) throw new InvalidInputError(kind, `must match ${IDENTIFIER_PATTERN}`)
}

export function assertGrant (value: unknown): asserts value is string {
  if (!isGrant(value)) throw new InvalidInputError('permission', 'must be segment(:segment)* with an optional final *, at most 256 characters')
}

export function assertPermission (value: unknown): asserts value is string {
  if (!isPermission(value)) throw new InvalidInputError('permission', 'must be a concrete segment(:segment)* (no *), at most 256 characters')
}

/** The fields of each operation's change, besides `op`. */
const CHANGE_FIELDS: Readonly<Record<Operation, readonly string[]>> = {
  'create-group': ['group'],
  'delete-group': ['group'],
  'add-permission': ['group', 'permission'],
  'remove-permission': ['group', 'permission'],
  'assign-user': ['group', 'user'],
  'unassign-user': ['group', 'user'],
  'include-group': ['group', 'includes'],
  'exclude-group': ['group', 'includes']
}

/**
 * Validates a change: a known operation, its fields well formed, and no other field — an unknown one
 * would be stored in the changelog and carried in notices, and peers would refuse the whole notice.
 * Throws a coded 400 naming the bad one.
 */
export function assertChange (change: Change): void {
  if (typeof change !== 'object' || change === null) throw new InvalidInputError('change', 'must be an object')
  if (!(OPERATIONS as readonly string[]).includes(change.op)) throw new InvalidInputError('operation', `must be one of ${OPERATIONS.join(', ')}`)
  const fields = CHANGE_FIELDS[change.op]
  const unknown = Object.keys(change).find((key) => key !== 'op' && !fields.includes(key))
  if (unknown !== undefined) throw new InvalidInputError('change', `${change.op} takes ${fields.join(' and ')} only, not ${JSON.stringify(unknown)}`)
  assertIdentifier('group', change.group)
  if (change.op === 'add-permission' || change.op === 'remove-permission') assertGrant(change.permission)
  if (change.op === 'assign-user' || change.op === 'unassign-user') assertIdentifier('user', change.user)
  if (change.op === 'include-group' || change.op === 'exclude-group') assertIdentifier('includes', change.includes)
}

/** A change's own fields only (`op` and what the operation takes), in a fresh object. */
export function changeFields (change: Change): Change {
  const out: Record<string, unknown> = { op: change.op }
  for (const key of CHANGE_FIELDS[change.op]) out[key] = (change as unknown as Record<string, unknown>)[key]
  return out as Change
}

/**
 * Validates a batch: an array of valid changes. A bad change throws its coded 400 with the message
 * prefixed by its place (`changes[3]: …`), so a client knows which one to fix.
 */
export function assertBatch (changes: readonly Change[]): void {
  if (!Array.isArray(changes)) throw new InvalidInputError('changes', 'must be an array of changes')
  changes.forEach((change, index) => {
    try {
      assertChange(change)
    } catch (err) {
      throw atIndex(err, index)
    }
  })
}

/** A batch change's error (always an Error: a coded one), its message prefixed by the change's place (`changes[3]: …`) and `index` set. */
export function atIndex (err: unknown, index: number): Error {
  const error = err as Error
  error.message = `changes[${index}]: ${error.message}`
  return Object.assign(error, { index })
}

/** Validates `ifRevision`: absent, or a non-negative safe integer. */
export function assertIfRevision (ifRevision: unknown): asserts ifRevision is number | undefined {
  if (ifRevision !== undefined && (typeof ifRevision !== 'number' || !Number.isSafeInteger(ifRevision) || ifRevision < 0)) {
    throw new InvalidInputError('ifRevision', 'must be a non-negative integer (0: the tenant was never written)')
  }
}

/** Validates `actor`: absent, or a string of 1 to ACTOR_MAX_LENGTH characters, well formed, without control characters. */
export function assertActor (actor: unknown): asserts actor is string | undefined {
  if (actor === undefined) return
  if (typeof actor !== 'string' || actor.length === 0 || actor.length > ACTOR_MAX_LENGTH || CONTROL.test(actor) || LONE_SURROGATE.test(actor)) {
    throw new InvalidInputError('actor', `must be 1 to ${ACTOR_MAX_LENGTH} characters without control characters`)
  }
}

/** Control characters (C0, DEL, C1) and the line and paragraph separators: never in a logged actor. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/
/** Half a surrogate pair: a string no database column stores as given. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Throws the coded 409 when `ifRevision` is given and the tenant is elsewhere (`current`). */
export function checkRevision (tenant: string, current: number, ifRevision: number | undefined): void {
  if (ifRevision !== undefined && ifRevision !== current) throw revisionConflict(tenant, current, ifRevision)
}

/** FST_POLICY_CACHE_REVISION_CONFLICT with `currentRevision` set. */
export function revisionConflict (tenant: string, current: number, ifRevision: number): InstanceType<typeof RevisionConflictError> & { currentRevision: number } {
  return Object.assign(new RevisionConflictError(tenant, current, ifRevision), { currentRevision: current })
}

/** The fields of a document's group, in order (`includes` optional: absent means none). */
const GROUP_FIELDS = ['name', 'permissions', 'users', 'includes']

/**
 * Validates a document's groups (for `tenant`): an array of `{ name, permissions, users, includes? }`
 * (no other field), names unique group ids, each group's permissions unique grants, its users unique
 * user ids and its includes unique names of the document's groups. Throws a coded 400
 * (FST_POLICY_CACHE_INVALID_INPUT) naming the first bad place, e.g. `groups[2].users[0]`; inclusions
 * closing a cycle throw 409 FST_POLICY_CACHE_INCLUSION_CYCLE naming the path.
 */
export function assertGroups (groups: unknown, tenant: string): asserts groups is GroupData[] {
  if (!Array.isArray(groups)) throw new InvalidInputError('groups', 'must be an array of { name, permissions, users }')
  const names = new Set<string>()
  groups.forEach((group: unknown, index) => {
    const at = `groups[${index}]`
    if (typeof group !== 'object' || group === null || Array.isArray(group)) throw new InvalidInputError(at, 'must be { name, permissions, users }')
    const unknown = Object.keys(group).find((key) => !GROUP_FIELDS.includes(key))
    if (unknown !== undefined) throw new InvalidInputError(at, `takes name, permissions, users and includes only, not ${JSON.stringify(unknown)}`)
    const { name, permissions, users, includes } = group as Partial<GroupData>
    if (!isIdentifier(name)) throw new InvalidInputError(`${at}.name`, `must match ${IDENTIFIER_PATTERN}`)
    if (names.has(name)) throw new InvalidInputError(`${at}.name`, `"${name}" is named twice`)
    names.add(name)
    assertUniqueList(`${at}.permissions`, permissions, isGrant, 'a grant (segment(:segment)* with an optional final *, at most 256 characters)')
    assertUniqueList(`${at}.users`, users, isIdentifier, `a user id matching ${IDENTIFIER_PATTERN}`)
    if (includes !== undefined) assertUniqueList(`${at}.includes`, includes, isIdentifier, `a group id matching ${IDENTIFIER_PATTERN}`)
  })
  // The inclusions name groups of the document and close no cycle (409 naming the path, as a write's).
  const children = new Map<string, string[]>()
  groups.forEach(({ name, includes = [] }: GroupData, index) => {
    includes.forEach((included, k) => {
      if (!names.has(included)) throw new InvalidInputError(`groups[${index}].includes[${k}]`, `"${included}" is no group of the document`)
      assertNoCycle(tenant, name, included, (group) => children.get(group) ?? [])
      children.set(name, [...(children.get(name) ?? []), included])
    })
  })
}

function assertUniqueList (at: string, list: unknown, valid: (value: unknown) => boolean, what: string): void {
  if (!Array.isArray(list)) throw new InvalidInputError(at, 'must be an array')
  const seen = new Set<unknown>()
  list.forEach((item: unknown, index) => {
    if (!valid(item)) throw new InvalidInputError(`${at}[${index}]`, `must be ${what}`)
    if (seen.has(item)) throw new InvalidInputError(`${at}[${index}]`, `${JSON.stringify(item)} is listed twice`)
    seen.add(item)
  })
}

/**
 * The changes that turn a tenant holding `current` into one holding exactly `target` (both valid,
 * `assertGroups`), in an order a batch applies: first `delete-group` of each group `target` lacks
 * (its grants, memberships and inclusions go with it), then for each group of `target` (by name) its
 * `create-group` when new, the `remove-permission`, `add-permission`, `unassign-user`,
 * `assign-user` and `exclude-group` of what differs (each sorted), and last the `include-group`s
 * (by group, then included group): every group exists by then, and the inclusions left are a part of
 * `target`'s, so no inclusion on the way closes a cycle. Empty when they hold the same; every change
 * has an effect when applied to `current` in order.
 */
export function replaceChanges (current: readonly GroupData[], target: readonly GroupData[]): Change[] {
  const before = new Map(current.map((group) => [group.name, group]))
  const after = new Set(target.map((group) => group.name))
  const changes: Change[] = []
  const inclusions: Change[] = []
  for (const name of [...before.keys()].sort()) if (!after.has(name)) changes.push({ op: 'delete-group', group: name })
  for (const { name: group, permissions, users, includes = [] } of [...target].sort((a, b) => a.name < b.name ? -1 : 1)) {
    const old = before.get(group)
    if (old === undefined) changes.push({ op: 'create-group', group })
    const [revoked, granted] = difference(old?.permissions ?? [], permissions)
    const [left, joined] = difference(old?.users ?? [], users)
    // An inclusion of a group the target lacks went with that group's deletion.
    const [excluded, included] = difference((old?.includes ?? []).filter((name) => after.has(name)), includes)
    for (const permission of revoked) changes.push({ op: 'remove-permission', group, permission })
    for (const permission of granted) changes.push({ op: 'add-permission', group, permission })
    for (const user of left) changes.push({ op: 'unassign-user', group, user })
    for (const user of joined) changes.push({ op: 'assign-user', group, user })
    for (const name of excluded) changes.push({ op: 'exclude-group', group, includes: name })
    for (const name of included) inclusions.push({ op: 'include-group', group, includes: name })
  }
  return [...changes, ...inclusions]
}

/** What `from` holds and `to` lacks, and what `to` holds and `from` lacks, each sorted. */
function difference (from: readonly string[], to: readonly string[]): [string[], string[]] {
  const a = new Set(from)
  const b = new Set(to)
  return [[...a].filter((item) => !b.has(item)).sort(), [...b].filter((item) => !a.has(item)).sort()]
}

/**
 * What one write logs for the effective changes of a batch: the change itself when one had an
 * effect (a plain entry, readable by any version), a {@link BatchChange} when several did, and null
 * when none did.
 */
export function loggedBatch (effective: Change[]): Change | BatchChange | null {
  if (effective.length === 0) return null
  return effective.length === 1 ? effective[0] : { op: 'batch', changes: effective }
}
