/**
 * The policy model (README.md, "Policy model"): identifiers, permissions, changes and snapshots, shared by the
 * store, the cache, the broadcaster and the routes.
 */
import { InvalidInputError, RevisionConflictError } from './errors.js'

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

/**
 * What one write logs for the effective changes of a batch: the change itself when one had an
 * effect (a plain entry, readable by any version), a {@link BatchChange} when several did, and null
 * when none did.
 */
export function loggedBatch (effective: Change[]): Change | BatchChange | null {
  if (effective.length === 0) return null
  return effective.length === 1 ? effective[0] : { op: 'batch', changes: effective }
}
