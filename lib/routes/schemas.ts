/** TypeBox schemas of the HTTP contract (README.md, "Routes"). Every object is closed (`additionalProperties: false`). */
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify'
import { Type, type TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import { Value } from 'typebox/value'
import { ACTOR_MAX_LENGTH, GRANT_PATTERN, IDENTIFIER_PATTERN, OPERATIONS, PERMISSION_MAX_LENGTH, PERMISSION_PATTERN } from '../model.js'

/** An object schema refusing unknown properties. */
export const closed = { additionalProperties: false } as const

export const Tenant = Type.String({ pattern: IDENTIFIER_PATTERN, maxLength: 128, description: 'Tenant id', examples: ['tenant1'] })
export const Group = Type.String({ pattern: IDENTIFIER_PATTERN, maxLength: 128, description: 'Group name', examples: ['editors'] })
export const User = Type.String({ pattern: IDENTIFIER_PATTERN, maxLength: 128, description: 'User id', examples: ['alice'] })
export const Grant = Type.String({
  pattern: GRANT_PATTERN,
  maxLength: PERMISSION_MAX_LENGTH,
  description: 'A grant: segment(:segment)* with an optional final `*`',
  examples: ['documents:read', 'documents:*']
})
export const Permission = Type.String({
  pattern: PERMISSION_PATTERN,
  maxLength: PERMISSION_MAX_LENGTH,
  description: 'A concrete permission to check (no `*`)',
  examples: ['documents:read']
})
const Revision = Type.Integer({ minimum: 0, description: 'The tenant\'s revision' })

/** `ifRevision` of a write: write only if the tenant is at this revision. */
export const IfRevision = Type.Optional(Type.Integer({
  minimum: 0,
  maximum: Number.MAX_SAFE_INTEGER,
  description: 'Write only if the tenant is at this revision (0: never written); else 409 FST_POLICY_CACHE_REVISION_CONFLICT and nothing is written',
  examples: [3]
}))

export const GroupBody = Type.Object({ tenant: Tenant, group: Group, ifRevision: IfRevision }, {
  ...closed, description: 'A group of a tenant', examples: [{ tenant: 'tenant1', group: 'editors' }]
})
export const PermissionBody = Type.Object({ tenant: Tenant, group: Group, permission: Grant, ifRevision: IfRevision }, {
  ...closed, description: 'A grant of a group', examples: [{ tenant: 'tenant1', group: 'editors', permission: 'documents:*' }]
})
export const UserBody = Type.Object({ tenant: Tenant, group: Group, user: User, ifRevision: IfRevision }, {
  ...closed, description: 'A user\'s membership of a group', examples: [{ tenant: 'tenant1', group: 'editors', user: 'alice' }]
})
/** The group another includes (role hierarchy). */
const Includes = Type.String({ pattern: IDENTIFIER_PATTERN, maxLength: 128, description: 'The group included: members of `group` hold its grants, transitively', examples: ['viewers'] })
export const InclusionBody = Type.Object({ tenant: Tenant, group: Group, includes: Includes, ifRevision: IfRevision }, {
  ...closed, description: 'An inclusion: members of `group` hold the grants of `includes`', examples: [{ tenant: 'tenant1', group: 'editors', includes: 'viewers' }]
})
/** One change of a batch: an operation and its fields (`permission` for the grant writes, `user` for the membership writes, `includes` for the inclusions). */
export const BatchChangeBody = Type.Object({
  operation: Type.Union(OPERATIONS.map((op) => Type.Literal(op)), { description: 'The write, named as its route' }),
  group: Group,
  permission: Type.Optional(Grant),
  user: Type.Optional(User),
  includes: Type.Optional(Includes)
}, { ...closed, description: 'One change: `permission` with add-permission and remove-permission only, `user` with assign-user and unassign-user only, `includes` with include-group and exclude-group only' })
export const BatchBody = Type.Object({
  tenant: Tenant,
  changes: Type.Array(BatchChangeBody, { minItems: 1, description: 'Applied in order, each seeing those before it; at most maxBatchChanges (413 above)' }),
  ifRevision: IfRevision
}, {
  ...closed,
  description: 'Several changes to one tenant, written atomically at one revision',
  examples: [{
    tenant: 'tenant1',
    changes: [
      { operation: 'create-group', group: 'editors' },
      { operation: 'add-permission', group: 'editors', permission: 'documents:*' },
      { operation: 'assign-user', group: 'editors', user: 'alice' }
    ],
    ifRevision: 0
  }]
})
export const TenantBody = Type.Object({ tenant: Tenant }, { ...closed, description: 'A tenant', examples: [{ tenant: 'tenant1' }] })

/** A write's acknowledgements. */
const PeersReply = Type.Object({
  acked: Type.Integer({ minimum: 0, description: 'Peers that acknowledged within ackTimeoutMs' }),
  total: Type.Integer({ minimum: 0, description: 'Peers notified (0 when nothing changed)' })
}, closed)

export const WriteReply = Type.Object({
  tenant: Tenant,
  revision: Revision,
  changed: Type.Boolean({ description: 'false when the write changed nothing (already present / already absent)' }),
  peers: PeersReply
}, {
  ...closed,
  description: 'The outcome of a write; pass `revision` as `minRevision` to read your own write on any instance',
  examples: [{ tenant: 'tenant1', revision: 3, changed: true, peers: { acked: 2, total: 2 } }]
})

export const BatchReply = Type.Object({
  tenant: Tenant,
  revision: Revision,
  changed: Type.Boolean({ description: 'false when no change had an effect (then no revision was taken)' }),
  effects: Type.Array(Type.Boolean(), { description: 'Whether each change had an effect, aligned with `changes`' }),
  peers: PeersReply
}, {
  ...closed,
  description: 'The outcome of a batch: one revision for all its changes',
  examples: [{ tenant: 'tenant1', revision: 4, changed: true, effects: [true, true, false], peers: { acked: 2, total: 2 } }]
})

/** `minRevision` of a read's query: a decimal string, checked exactly (integer conversion would turn `1.5` into 1). */
const MinRevisionQuery = Type.Optional(Type.String({ pattern: '^(0|[1-9][0-9]{0,14})$', description: 'Answer from revision ≥ minRevision (read-your-writes): the `revision` a write returned', examples: ['12'] }))

export const CheckQuery = Type.Object({
  tenant: Tenant,
  user: User,
  permission: Permission,
  minRevision: MinRevisionQuery
}, closed)
export const CheckReply = Type.Object({
  allowed: Type.Boolean({ description: 'Whether the user holds the permission' }),
  revision: Revision
}, { ...closed, description: 'A decision and the revision it was answered from', examples: [{ allowed: true, revision: 3 }] })

/** A page's query: `limit` and `cursor` (the previous page's `next`), `minRevision`. */
const pageFields = {
  limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,3}$', description: 'Most items in the page: 1 to 1000, default 100', examples: ['100'] })),
  cursor: Type.Optional(Type.String({ maxLength: 400, description: 'The `next` of the previous page (opaque); absent for the first page', examples: ['ZWRpdG9ycw'] })),
  minRevision: MinRevisionQuery
}
export const PageQuery = Type.Object(pageFields, { ...closed, description: 'A page: `limit`, `cursor`, `minRevision`; no other parameter' })
export const WhoQuery = Type.Object({
  permission: Type.String({
    pattern: GRANT_PATTERN,
    maxLength: PERMISSION_MAX_LENGTH,
    description: 'The permission looked up: concrete (`documents:read`, held through it, `documents:*` or `*`), or a wildcard (`documents:*`, held through it, a shorter wildcard or `*`)',
    examples: ['documents:read']
  }),
  ...pageFields
}, { ...closed, description: 'A reverse lookup: `permission`, and a page' })
const Next = Type.Union([Type.String(), Type.Null()], { description: 'The cursor of the next page (pass it as `cursor`); null on the last page' })

export const GroupsReply = Type.Object({ tenant: Tenant, revision: Revision, groups: Type.Array(Group), next: Next }, {
  ...closed,
  description: 'A page of the tenant\'s group names, sorted, at `revision`',
  examples: [{ tenant: 'tenant1', revision: 3, groups: ['admins', 'editors'], next: 'ZWRpdG9ycw' }]
})
export const GroupUsersReply = Type.Object({ tenant: Tenant, group: Group, revision: Revision, users: Type.Array(User), next: Next }, {
  ...closed,
  description: 'A page of a group\'s members, sorted, at `revision`',
  examples: [{ tenant: 'tenant1', group: 'editors', revision: 3, users: ['alice', 'bob'], next: null }]
})
export const GroupPermissionsReply = Type.Object({ tenant: Tenant, group: Group, revision: Revision, permissions: Type.Array(Grant), next: Next }, {
  ...closed,
  description: 'A page of a group\'s grants, sorted, at `revision`',
  examples: [{ tenant: 'tenant1', group: 'editors', revision: 3, permissions: ['documents:*'], next: null }]
})
export const WhoReply = Type.Object({
  tenant: Tenant,
  permission: Grant,
  revision: Revision,
  users: Type.Array(Type.Object({
    user: User,
    groups: Type.Array(Group, { description: 'The user\'s groups (sorted) through which they hold the permission' }),
    chains: Type.Array(Type.Array(Group), {
      description: 'Aligned with `groups`: the chain of inclusions each holds it through — the group, the group it includes, …, the group granting it (`[group]` when it grants it itself)'
    })
  }, closed)),
  next: Next
}, {
  ...closed,
  description: 'A page of the users holding the permission, sorted, at `revision`',
  examples: [{
    tenant: 'tenant1',
    permission: 'documents:read',
    revision: 3,
    users: [{ user: 'alice', groups: ['admins'], chains: [['admins', 'editors', 'viewers']] }, { user: 'bob', groups: ['viewers'], chains: [['viewers']] }],
    next: null
  }]
})

export const CheckBatchBody = Type.Object({
  tenant: Tenant,
  checks: Type.Array(Type.Object({ user: User, permission: Permission }, closed), { description: 'The pairs to check; at most maxBatchChecks (413 above)' }),
  minRevision: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Answer from revision ≥ minRevision (read-your-writes)', examples: [3] }))
}, {
  ...closed,
  description: 'Many (user, permission) pairs of one tenant, answered from one revision',
  examples: [{ tenant: 'tenant1', checks: [{ user: 'alice', permission: 'documents:read' }, { user: 'bob', permission: 'documents:write' }] }]
})
export const CheckBatchReply = Type.Object({
  tenant: Tenant,
  revision: Revision,
  results: Type.Array(Type.Boolean(), { description: 'Whether each user holds each permission, aligned with `checks`' })
}, { ...closed, description: 'A batch check\'s answers, all from `revision`', examples: [{ tenant: 'tenant1', revision: 3, results: [true, false] }] })

/** A revision in a query string or header: a decimal integer without leading zeros, at most 15 digits (a safe integer). */
export const REVISION_TEXT_PATTERN = '^(0|[1-9][0-9]{0,14})$'

/** The audit feed's page: decimal strings, checked exactly (integer conversion would turn `1.5` into 1); `limit` above 1000 is a coded 400. */
export const ChangesQuery = Type.Object({
  after: Type.Optional(Type.String({ pattern: REVISION_TEXT_PATTERN, description: 'The entries after this revision (default 0: from the oldest kept); the next page is after the last entry\'s revision', examples: ['120'] })),
  limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,3}$', description: 'At most this many entries, 1 to 1000 (default 100)', examples: ['100'] }))
}, closed)
/** One entry of the audit feed: a change (`operation` and its fields) or a batch (`changes`), with its origin, actor and commit time. */
export const ChangeEntry = Type.Object({
  revision: Revision,
  operation: Type.Optional(Type.Enum(OPERATIONS, { description: 'The write; absent on a batch entry' })),
  group: Type.Optional(Group),
  permission: Type.Optional(Grant),
  user: Type.Optional(User),
  includes: Type.Optional(Includes),
  changes: Type.Optional(Type.Array(Type.Object({
    operation: Type.Enum(OPERATIONS, { description: 'The write' }),
    group: Group,
    permission: Type.Optional(Grant),
    user: Type.Optional(User),
    includes: Type.Optional(Includes)
  }, closed), { description: 'A batch\'s effective changes, in order (instead of operation and its fields)' })),
  origin: Type.String({ description: 'The serverId of the instance that wrote it' }),
  actor: Type.Union([Type.String({ maxLength: ACTOR_MAX_LENGTH }), Type.Null()], { description: 'Who made the write: the user of the request\'s identity (`identify`) through the routes, the `actor` write option through the decorator; null when neither' }),
  committedAt: Type.Integer({ description: 'When its transaction wrote it: epoch milliseconds of the database\'s clock' })
}, closed)
/** A page of the audit feed: the tenant's current and oldest kept revision, and the entries. */
export const ChangesReply = Type.Object({
  tenant: Tenant,
  revision: Type.Integer({ minimum: 0, description: 'The tenant\'s current revision (0: never written)' }),
  oldestRevision: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: 'The oldest revision the changelog still holds (changelogRetention); null when none' }),
  entries: Type.Array(ChangeEntry, { description: 'The entries after `after`, in revision order; fewer than `limit` only at the current revision' })
}, {
  ...closed,
  description: 'A page of a tenant\'s audit feed',
  examples: [{
    tenant: 'tenant1',
    revision: 2,
    oldestRevision: 1,
    entries: [
      { revision: 1, operation: 'create-group', group: 'editors', origin: 'server-a', actor: 'alice', committedAt: 1764658800000 },
      { revision: 2, changes: [{ operation: 'assign-user', group: 'editors', user: 'bob' }, { operation: 'assign-user', group: 'editors', user: 'carol' }], origin: 'server-b', actor: null, committedAt: 1764658860000 }
    ]
  }]
})

/** A page of the tenant listing: `limit` and `cursor` only (it reads the database: no `minRevision`). */
export const TenantsQuery = Type.Object({ limit: pageFields.limit, cursor: pageFields.cursor }, { ...closed, description: 'A page: `limit`, `cursor`; no other parameter' })
export const TenantsReply = Type.Object({
  tenants: Type.Array(Type.Object({ tenant: Tenant, revision: Type.Integer({ minimum: 1, description: 'The tenant\'s current revision' }) }, closed)),
  next: Next
}, {
  ...closed,
  description: 'A page of the tenants that exist (written, and not deleted since), sorted by id',
  examples: [{ tenants: [{ tenant: 'tenant1', revision: 3 }, { tenant: 'tenant2', revision: 12 }], next: 'dGVuYW50Mg' }]
})
export const DeleteTenantQuery = Type.Object({
  ifRevision: Type.Optional(Type.String({ pattern: '^(0|[1-9][0-9]{0,14})$', description: 'Delete only if the tenant is at this revision; else 409 FST_POLICY_CACHE_REVISION_CONFLICT and nothing is deleted', examples: ['3'] }))
}, closed)
export const DeleteTenantReply = Type.Object({
  tenant: Tenant,
  deleted: Type.Literal(true),
  revision: Type.Integer({ minimum: 0, description: 'The tenant\'s revision after the deletion: kept, a tenant created again goes on from it' }),
  peers: PeersReply
}, {
  ...closed,
  description: 'The tenant is deleted: every instance dropped its contents',
  examples: [{ tenant: 'tenant1', deleted: true, revision: 4, peers: { acked: 2, total: 2 } }]
})
/** One group of an export document. */
const DocumentGroup = Type.Object({
  name: Group,
  permissions: Type.Array(Grant, { description: 'The group\'s grants, each once' }),
  users: Type.Array(User, { description: 'The group\'s members, each once' }),
  includes: Type.Optional(Type.Array(Group, { description: 'The groups of the document it includes, each once, closing no cycle (409 FST_POLICY_CACHE_INCLUSION_CYCLE); absent means none. Always present in an export.' }))
}, closed)
const documentExample = {
  tenant: 'tenant1',
  revision: 3,
  groups: [{ name: 'editors', permissions: ['documents:write'], users: ['alice'], includes: ['viewers'] }, { name: 'viewers', permissions: ['documents:read'], users: [], includes: [] }],
  format: 1
}
export const ExportReply = Type.Object({
  tenant: Tenant,
  revision: Revision,
  groups: Type.Array(DocumentGroup, { description: 'Sorted by name, their permissions and users sorted' }),
  format: Type.Literal(1, { description: 'The document format' })
}, {
  ...closed,
  description: 'A tenant\'s whole policy at one revision, read from the database: what `PUT /tenants/:tenant/import` takes',
  examples: [documentExample]
})
export const ImportBody = Type.Object({
  tenant: Type.Optional(Type.String({ pattern: IDENTIFIER_PATTERN, maxLength: 128, description: 'The tenant imported into, as the path names it (another one is a 400: change or drop it to import a document under another name)' })),
  revision: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'The revision it was exported at (checked, not used: `ifRevision` is the precondition)' })),
  groups: Type.Array(DocumentGroup, { description: 'The policy the tenant will hold: names unique, each group\'s permissions and users unique; at most maxImportFacts groups, grants and memberships (413 above)' }),
  format: Type.Literal(1, { description: 'The document format' }),
  ifRevision: IfRevision
}, {
  ...closed,
  description: 'An export document (and `ifRevision`): the tenant\'s policy becomes exactly the document\'s',
  examples: [{ ...documentExample, ifRevision: 3 }]
})
/** Where a watch stream starts: `after` (a `Last-Event-ID` header wins over it). */
export const WatchQuery = Type.Object({
  after: Type.Optional(Type.String({ pattern: REVISION_TEXT_PATTERN, description: 'Send the changes after this revision, the committed ones first from the changelog (default: from the revision this instance is at). A `Last-Event-ID` header wins over it.', examples: ['120'] }))
}, closed)
/** The header an EventSource sends when it reconnects: the id of the last event it had (a revision). Other headers pass. */
export const WatchHeaders = Type.Object({
  'last-event-id': Type.Optional(Type.String({ pattern: REVISION_TEXT_PATTERN, description: 'Resume after this revision: the id of the last event received (an EventSource sends it when it reconnects)' }))
})
/** The watch stream's 200: Server-Sent Events, described for OpenAPI (the stream is written by hand, not serialized). */
export const WatchStream = {
  description: 'Server-Sent Events: `ready` (id = the revision the stream starts after), then `change` (id = its revision; data = an audit feed entry), `reset` (id = the revision the stream continues after; data = { code: FST_POLICY_CACHE_CHANGES_PRUNED, message, oldestRevision, revision }) and a final `end` (data = { code, message }); comment lines as heartbeats',
  content: { 'text/event-stream': { schema: Type.String({ description: 'text/event-stream' }) } }
}

export const TenantParams = Type.Object({ tenant: Tenant }, closed)
export const GroupParams = Type.Object({ tenant: Tenant, group: Group }, closed)
export const UserParams = Type.Object({ tenant: Tenant, user: User }, closed)
/**
 * The views' fallback for ids past the host's `maxParamLength`: `<tenant>` or `<tenant>/users/<user>`,
 * split and validated by the handler (TypeBox cannot report errors on a property named `*`).
 */
export const LongIdParams = Type.Object({ '*': Type.String() }, closed)
export const TenantReply = Type.Object({
  tenant: Tenant,
  revision: Revision,
  groups: Type.Array(Type.Object({
    name: Group,
    permissions: Type.Array(Grant),
    users: Type.Array(User),
    includes: Type.Array(Group, { description: 'The groups it includes: its members hold their grants too, transitively' })
  }, closed))
}, {
  ...closed,
  description: 'A tenant\'s groups with their grants, members and included groups',
  examples: [{
    tenant: 'tenant1',
    revision: 4,
    groups: [
      { name: 'editors', permissions: ['documents:write'], users: ['alice'], includes: ['viewers'] },
      { name: 'viewers', permissions: ['documents:read'], users: [], includes: [] }
    ]
  }]
})
export const UserReply = Type.Object({
  tenant: Tenant,
  user: User,
  revision: Revision,
  groups: Type.Array(Group, { description: 'The groups the user is a member of' }),
  permissions: Type.Array(Grant, { description: 'Every grant the user holds, inherited ones included' }),
  grants: Type.Array(Type.Object({
    permission: Grant,
    chain: Type.Array(Group, { description: 'The user\'s group, the group it includes, …, the group granting it (the shortest chain)' })
  }, closed), { description: 'The same grants, each with the chain of groups it comes through' })
}, {
  ...closed,
  description: 'A user\'s groups and effective grants in a tenant, and why they hold each',
  examples: [{
    tenant: 'tenant1',
    user: 'alice',
    revision: 4,
    groups: ['editors'],
    permissions: ['documents:read', 'documents:write'],
    grants: [{ permission: 'documents:read', chain: ['editors', 'viewers'] }, { permission: 'documents:write', chain: ['editors'] }]
  }]
})
export const RefreshReply = Type.Object({ tenant: Tenant, revision: Revision }, {
  ...closed, description: 'The tenant\'s revision after the reload', examples: [{ tenant: 'tenant1', revision: 3 }]
})

export const TransportType = Type.Union([Type.Literal('webhook'), Type.Literal('pg-notify'), Type.Literal('nats'), Type.Literal('redis')], { description: 'The transport (the `transport` option)' })
export const TransportState = Type.Union([Type.Literal('up'), Type.Literal('connecting'), Type.Literal('down'), Type.Literal('closed')])

export const HealthReply = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('unavailable'), Type.Literal('closing')], {
    description: '`closing` (503) once a graceful shutdown began (take the instance out of rotation); `unavailable` (503) when the database does not answer; `degraded` (200) when it does but writes are failing'
  }),
  serverId: Type.String(),
  uptimeMs: Type.Integer({ minimum: 0 }),
  db: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  writes: Type.Union([Type.Literal('ok'), Type.Literal('failing')], {
    description: '`failing` when the latest write failed on the database less than 60 s ago and none has succeeded since'
  }),
  tenantsCached: Type.Integer({ minimum: 0 }),
  peers: Type.Object({ total: Type.Integer({ minimum: 0 }), up: Type.Integer({ minimum: 0 }) }, closed),
  membership: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('off')], {
    description: '`degraded`: this instance\'s heartbeat or membership read fails (the last known set is kept), or another instance claims its serverId'
  }),
  transport: Type.Object({
    type: TransportType,
    state: TransportState
  }, { ...closed, description: 'How notices travel; `down` (status degraded): the subscription is lost and being re-established' })
}, closed)

/** `schema` or null. */
export const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()])

/** The transport's status, as `/servers` shows it (lib/broadcast/transport.ts, `TransportStatus`). */
export const TransportStatusSchema = Type.Object({
  type: TransportType,
  state: TransportState,
  acknowledged: Type.Boolean({ description: 'Whether a write waits for acknowledgements (webhook and nats yes, pg-notify and redis no)' }),
  channel: Nullable(Type.String({ description: 'The channel listened on; null for webhooks' })),
  subscribedAt: Nullable(Type.String({ description: 'When the current subscription was made' })),
  subscriptions: Type.Integer({ minimum: 0, description: 'Subscriptions made since start; each resynced every cached tenant' }),
  lastError: Nullable(Type.String({ description: 'The last failure of the subscription' })),
  published: Type.Integer({ minimum: 0, description: 'Notices published on the channel' }),
  received: Type.Integer({ minimum: 0, description: 'Verified notices from other instances handed to the engine' }),
  hints: Type.Integer({ minimum: 0, description: 'Unverifiable messages: nothing applied, only the changelog read' }),
  dropped: Type.Integer({ minimum: 0, description: 'Messages dropped: malformed, replayed or this instance\'s own' })
}, closed)

export const ServersReply = Type.Object({
  self: Type.Object({ serverId: Type.String(), url: Nullable(Type.String()) }, closed),
  peers: Type.Array(Type.Object({
    url: Type.String(),
    serverId: Nullable(Type.String()),
    state: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('unknown'), Type.Literal('gone')]),
    lastSuccessAt: Nullable(Type.String()),
    lastFailureAt: Nullable(Type.String()),
    lastError: Nullable(Type.String()),
    consecutiveFailures: Type.Integer({ minimum: 0 }),
    delivered: Type.Integer({ minimum: 0 }),
    failed: Type.Integer({ minimum: 0 }),
    latencyMs: Nullable(Type.Number({ minimum: 0 })),
    circuit: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half-open')]),
    nextAttemptAt: Nullable(Type.String()),
    tenantsBehind: Type.Integer({ minimum: 0 }),
    lag: Type.Array(Type.Object({
      tenant: Type.String(),
      acked: Nullable(Type.Integer({ minimum: 0 })),
      revision: Type.Integer({ minimum: 0 })
    }, closed), { description: 'Tenants whose latest revision the peer has not acknowledged: its acknowledged revision vs ours' }),
    source: Type.Union([Type.Literal('static'), Type.Literal('membership'), Type.Literal('both')], { description: 'The `peers` option, the database\'s membership, or both' }),
    incarnation: Nullable(Type.String({ description: 'A member\'s incarnation, new at each of its starts' })),
    heartbeatAgeMs: Nullable(Type.Integer({ minimum: 0, description: 'How long ago a member\'s last heartbeat was (database clock)' }))
  }, closed)),
  transport: TransportStatusSchema
}, closed)

export const ErrorReply = Type.Object({
  statusCode: Type.Integer(),
  code: Type.Optional(Type.String({ description: 'A FST_* code; absent on an error a host hook threw without one' })),
  error: Type.String(),
  message: Type.String()
}, { description: 'Fastify\'s error shape' })

/**
 * The validator compiler of the plugin's routes: TypeBox's compiled check, as
 * `TypeBoxValidatorCompiler` does it, but a querystring or params value that already passes is
 * accepted as it is — only one that fails is converted (`Value.Convert`) and checked again. The
 * provider's compiler converts every request first, the largest plugin-specific cost of
 * `GET /check-access` in a CPU profile. The same values pass and fail: the plugin's query and params
 * are strings, which conversion leaves as they are. Bodies are checked strictly, never converted.
 */
export const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const validator = Compile(schema)
  const fail = (value: unknown): { error: FastifySchemaValidationError[] } => ({ error: validator.Errors(value) as FastifySchemaValidationError[] })
  return (value) => {
    if (validator.Check(value)) return { value }
    if (httpPart === 'body') return fail(value)
    const converted = Value.Convert(schema, value)
    return validator.Check(converted) ? { value: converted } : fail(converted)
  }
}
