/**
 * The notice: what one instance tells the others after a write, and the only place it is encoded and
 * decoded. The wire format is specified in docs/protocol.md ("The webhook").
 *
 *   sender:   engine → `noticeChange` (one entry per committed change) → broadcaster → `encodeNotice`
 *   receiver: JSON → `NoticeSchema` (the route's validator) → `decodeNotice` → engine
 *
 * Decoding parses each entry's carried change once; the engine receives {@link NoticeEntry} values
 * and never looks at wire fields.
 */
import { Type } from 'typebox'
import { DIGEST_PATTERN } from '../digest.js'
import { InvalidInputError } from '../errors.js'
import {
  assertChange, atIndex, changeFields, GRANT_PATTERN, IDENTIFIER_PATTERN, OPERATIONS, PERMISSION_MAX_LENGTH,
  type Change, type LoggedChange, type Operation
} from '../model.js'

/** Where a peer's receiver listens, relative to the peer's URL (docs/protocol.md). */
export const WEBHOOK_PATH = '/webhook/refresh'
/** The most changes one notice may carry; a receiver rejects more, a sender splits. */
export const MAX_NOTICE_CHANGES = 1000
/** A notice body is split before it grows past this many bytes (receivers accept 64 KiB by default). */
export const MAX_NOTICE_BYTES = 32 * 1024
/** The most changes an entry carries for a batch: a larger batch's entry carries none (peers read the changelog). */
export const MAX_CARRIED_BATCH = 100
/** The most bytes a carried batch may take as JSON, so that one entry always fits in {@link MAX_NOTICE_BYTES}. */
export const MAX_CARRIED_BATCH_BYTES = 16 * 1024
/** What a database id (`PolicyStore.databaseId()`, a notice's `database`) looks like. */
export const DATABASE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'

/**
 * One entry of a notice on the wire: tenant `tenant` is at `revision` on the sender. It may carry the
 * change committed AT that revision (`operation` and `group`, plus `permission` or `user` as the
 * operation needs): a receiver cached at exactly `revision - 1` applies it without reading the
 * database. An entry is one object from writer to wire, so coalescing never pairs a revision with
 * another revision's data.
 */
export interface NoticeChange {
  tenant: string
  revision: number
  /** The digest of the tenant's contents at `revision` (lib/digest.ts). */
  digest?: string
  operation?: Operation
  group?: string
  permission?: string
  user?: string
  /** The group included or excluded (include-group, exclude-group). */
  includes?: string
  /**
   * The effective changes of the batch committed AT `revision`, in order (instead of `operation` and
   * its fields): at most {@link MAX_CARRIED_BATCH} of them within {@link MAX_CARRIED_BATCH_BYTES},
   * else the entry carries nothing and receivers read the changelog.
   */
  batch?: CarriedChange[]
}

/** One change of a carried batch, in the wire's words. */
export interface CarriedChange {
  operation: Operation
  group: string
  permission?: string
  user?: string
  includes?: string
}

/** The notice body (docs/protocol.md). */
export interface Notice {
  type: 'policy.changed'
  origin: string
  /** The id of the sender's database: a receiver on another database refuses the notice (409). */
  database?: string
  /** The sender's URL as its peers list it (its `publicUrl`), when it knows it. */
  url?: string
  /** The changes; none in the announcement an instance sends its peers when it starts. */
  changes: NoticeChange[]
}

/**
 * What a receiver answers: its revision for each tenant named, `null` when it has the tenant uncached.
 * A replayed message id answers `revisions: {}` with `duplicate: true` (it was handled already).
 */
export interface NoticeReply {
  serverId: string
  revisions: Record<string, number | null>
  duplicate?: true
}

/** One entry as received, decoded: the tenant's revision on the sender and the change it carries, if any. */
export interface NoticeEntry {
  tenant: string
  revision: number
  /** The digest of the tenant at `revision` on the sender; `undefined` from an older sender. */
  digest: string | undefined
  /** The change committed at `revision`, validated; `undefined` when the entry carries none (an older sender). */
  carried: LoggedChange | undefined
}

/** A notice as received, decoded: who sent it and its entries. */
export interface ReceivedNotice {
  origin: string
  /** The sender's database id; `undefined` from an older sender. */
  database: string | undefined
  /** The sender's URL, when it sent one. */
  url?: string
  entries: NoticeEntry[]
}

// Stryker disable StringLiteral: the schemas' string literals below are OpenAPI descriptions, no behaviour ('policy.changed' is kept apart)
/** One change of a carried batch: closed, an operation this version applies. */
export const CarriedChangeSchema = Type.Object({
  operation: Type.Enum(OPERATIONS, { description: 'The write' }),
  group: Type.String({ pattern: IDENTIFIER_PATTERN, description: 'The group written' }),
  permission: Type.Optional(Type.String({ pattern: GRANT_PATTERN, maxLength: PERMISSION_MAX_LENGTH, description: 'The grant added or removed (add-permission, remove-permission only)' })),
  user: Type.Optional(Type.String({ pattern: IDENTIFIER_PATTERN, description: 'The user assigned or unassigned (assign-user, unassign-user only)' })),
  includes: Type.Optional(Type.String({ pattern: IDENTIFIER_PATTERN, description: 'The group included or excluded (include-group, exclude-group only)' }))
}, { additionalProperties: false })

/** An entry of the body; known fields strictly, unknown ones allowed (a newer sender). */
export const NoticeChangeSchema = Type.Object({
  tenant: Type.String({ pattern: IDENTIFIER_PATTERN, description: 'The tenant that changed' }),
  revision: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'The tenant\'s revision on the sender' }),
  digest: Type.Optional(Type.String({ pattern: DIGEST_PATTERN, description: 'The digest of the tenant\'s contents at this revision (32 lowercase hex digits)' })),
  operation: Type.Optional(Type.Enum(OPERATIONS, { description: 'The write that produced the revision; required when the entry carries the change' })),
  group: Type.Optional(Type.String({ pattern: IDENTIFIER_PATTERN, description: 'Carried change: the group written at this revision' })),
  permission: Type.Optional(Type.String({ pattern: GRANT_PATTERN, maxLength: PERMISSION_MAX_LENGTH, description: 'Carried change: the grant added or removed (add-permission, remove-permission only)' })),
  user: Type.Optional(Type.String({ pattern: IDENTIFIER_PATTERN, description: 'Carried change: the user assigned or unassigned (assign-user, unassign-user only)' })),
  includes: Type.Optional(Type.String({ pattern: IDENTIFIER_PATTERN, description: 'Carried change: the group included or excluded (include-group, exclude-group only)' })),
  batch: Type.Optional(Type.Array(CarriedChangeSchema, {
    minItems: 1,
    maxItems: MAX_CARRIED_BATCH,
    description: 'Carried batch: the effective changes of the batch committed at this revision, in order (no operation, group, permission or user beside it)'
  }))
}, { additionalProperties: true })

/** The notice body. */
export const NoticeSchema = Type.Object({
  // Stryker restore StringLiteral
  type: Type.Literal('policy.changed'),
  // Stryker disable StringLiteral: OpenAPI descriptions
  origin: Type.String({ pattern: IDENTIFIER_PATTERN, description: 'The sender\'s server id' }),
  database: Type.Optional(Type.String({ pattern: DATABASE_ID_PATTERN, description: 'The id of the sender\'s database; a receiver on another database answers 409' })),
  url: Type.Optional(Type.String({ maxLength: 2048, description: 'The sender\'s URL as its peers list it (its publicUrl)' })),
  changes: Type.Array(NoticeChangeSchema, {
    maxItems: MAX_NOTICE_CHANGES,
    description: 'Empty in the announcement an instance sends its peers when it starts'
  })
}, {
  additionalProperties: true,
  description: 'A Standard Webhooks v1 message; unknown fields are ignored so newer senders can talk to older receivers'
})

/** The receiver's reply. */
export const NoticeReplySchema = Type.Object({
  serverId: Type.String({ description: 'The receiver\'s server id' }),
  revisions: Type.Record(Type.String(), Type.Union([Type.Integer(), Type.Null()]), {
    description: 'The receiver\'s revision per tenant named, null when it does not cache the tenant; empty for a duplicate'
  }),
  duplicate: Type.Optional(Type.Literal(true, { description: 'Present when the message id was handled already: nothing was done again' }))
}, { additionalProperties: false })
// Stryker restore StringLiteral

/**
 * The notice entry of a committed change: its revision, the tenant's digest after it, and the change
 * (its operation and the operation's fields, nothing else) — or, for a batch, its changes when they
 * fit {@link MAX_CARRIED_BATCH} and {@link MAX_CARRIED_BATCH_BYTES}, else nothing carried.
 */
export function noticeChange (tenant: string, change: LoggedChange, digest: string): NoticeChange {
  if (change.op === 'batch') {
    const entry: NoticeChange = { tenant, revision: change.revision, digest }
    if (change.changes.length > MAX_CARRIED_BATCH) return entry
    const batch = change.changes.map((one): CarriedChange => {
      const { op, ...data } = changeFields(one)
      return { operation: op, ...data } as CarriedChange
    })
    return JSON.stringify(batch).length > MAX_CARRIED_BATCH_BYTES ? entry : { ...entry, batch }
  }
  const { op, ...data } = changeFields(change)
  return { tenant, revision: change.revision, digest, operation: op, ...data }
}

/** The body a sender sends: a `policy.changed` notice from `origin` carrying `changes`, with the sender's database id and URL when known. */
export function encodeNotice (origin: string, changes: NoticeChange[], from: { database?: string | undefined, url?: string | undefined } = {}): string {
  // JSON leaves out a field whose value is undefined: no database or URL known, none sent.
  const notice: Notice = { type: 'policy.changed', origin, database: from.database, url: from.url, changes }
  return JSON.stringify(notice)
}

/**
 * Decodes one entry that passed {@link NoticeChangeSchema}: its carried change parsed, or
 * `carried: undefined` when it carries none (no `group`, `permission` or `user`: an older sender's
 * entry). Throws a coded 400 (FST_POLICY_CACHE_INVALID_INPUT) when the data is malformed or does not
 * fit `operation` (missing, or a field the operation has no use for).
 */
export function decodeEntry (entry: NoticeChange): NoticeEntry {
  const { tenant, revision, digest, operation: op, group, permission, user, includes, batch } = entry
  if (batch !== undefined) {
    if (op !== undefined || group !== undefined || permission !== undefined || user !== undefined || includes !== undefined) {
      throw new InvalidInputError('change', 'an entry carries one change or a batch, not both')
    }
    const changes = batch.map(({ operation, ...fields }, index) => {
      const change = { op: operation, ...fields } as Change
      try {
        assertChange(change)
      } catch (err) {
        throw atIndex(err, index)
      }
      return change
    })
    return { tenant, revision, digest, carried: { op: 'batch', changes, revision } }
  }
  if (group === undefined && permission === undefined && user === undefined && includes === undefined) return { tenant, revision, digest, carried: undefined }
  if (op === undefined) throw new InvalidInputError('change', 'carried data needs an operation')
  const needs = op === 'add-permission' || op === 'remove-permission'
    ? 'permission'
    : op === 'assign-user' || op === 'unassign-user'
      ? 'user'
      : op === 'include-group' || op === 'exclude-group' ? 'includes' : 'group'
  if ((needs !== 'permission' && permission !== undefined) || (needs !== 'user' && user !== undefined) || (needs !== 'includes' && includes !== undefined)) {
    throw new InvalidInputError('change', `${op} carries ${needs === 'group' ? 'only group' : `group and ${needs} only`}`)
  }
  const change = (needs === 'group' ? { op, group } : { op, group, [needs]: entry[needs] }) as Change
  // Presence and patterns (a missing group, permission or user is a 400 here).
  assertChange(change)
  return { tenant, revision, digest, carried: { ...change, revision } }
}

/**
 * Decodes a notice that passed {@link NoticeSchema}, every entry before any is used: one malformed
 * carried change rejects the whole notice with a coded 400, so nothing of it is applied.
 */
export function decodeNotice (notice: Notice): ReceivedNotice {
  return { origin: notice.origin, database: notice.database, url: notice.url, entries: notice.changes.map(decodeEntry) }
}
