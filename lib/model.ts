/**
 * The policy model (README.md, "Policy model"): identifiers, permissions, changes and snapshots, shared by the
 * store, the cache, the broadcaster and the routes.
 */
import { InvalidInputError } from './errors.js'

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

/** The six writes, named as on the wire (`operation` in a webhook notice). */
export const OPERATIONS = ['create-group', 'delete-group', 'add-permission', 'remove-permission', 'assign-user', 'unassign-user'] as const
export type Operation = typeof OPERATIONS[number]

/** One write, as the store applies it and the changelog records it. */
export type Change =
  | { op: 'create-group', group: string }
  | { op: 'delete-group', group: string }
  | { op: 'add-permission', group: string, permission: string }
  | { op: 'remove-permission', group: string, permission: string }
  | { op: 'assign-user', group: string, user: string }
  | { op: 'unassign-user', group: string, user: string }

/** A change as read back from the changelog. */
export type LoggedChange = Change & { revision: number }

/** One group of a tenant, as stored. */
export interface GroupData {
  name: string
  permissions: string[]
  users: string[]
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

export function assertIdentifier (kind: 'tenant' | 'group' | 'user', value: unknown): asserts value is string {
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
  'unassign-user': ['group', 'user']
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
}

/** A change's own fields only (`op` and what the operation takes), in a fresh object. */
export function changeFields (change: Change): Change {
  const out: Record<string, unknown> = { op: change.op }
  for (const key of CHANGE_FIELDS[change.op]) out[key] = (change as unknown as Record<string, unknown>)[key]
  return out as Change
}
