/**
 * The policy routes: the writes, the batch, the check and batch check, the tenant and user views,
 * the listings and the reverse lookup, the audit feed, the tenant lifecycle (list, delete, export,
 * import), refresh (README.md, "Routes").
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type, type TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import { InvalidInputError } from '../errors.js'
import type { IdentifyFunction } from '../guard.js'
import { assertActor, type Change, type Operation } from '../model.js'
import type { PageOptions } from '../page.js'
import type { BatchOutcome, ImportDocument, PolicyCache, WriteOutcome } from '../policy-cache.js'
import {
  BatchBody, BatchReply, ChangesQuery, ChangesReply, CheckBatchBody, CheckBatchReply, CheckQuery, CheckReply, DeleteTenantQuery, DeleteTenantReply, ErrorReply, ExportReply,
  GroupBody, GroupParams, GroupPermissionsReply, GroupsReply, GroupUsersReply, ImportBody, InclusionBody, LongIdParams, PageQuery, PermissionBody, RefreshReply, TenantBody, TenantParams,
  TenantReply, TenantsQuery, TenantsReply, UserBody, UserParams, UserReply, validatorCompiler, WatchHeaders, WatchQuery, WatchStream, WhoQuery, WhoReply, WriteReply
} from './schemas.js'
import { resumeAfter, streamWatch, wireEntry } from './watch.js'

export interface PolicyRoutesOptions {
  engine: PolicyCache
  /** Largest body of a write or `/refresh-tenant`, in bytes (413 above, before parsing). */
  bodyLimit: number
  /** Most changes of a batch: `/batch`'s body limit fits this many. */
  maxBatchChanges: number
  /** Most checks of a batch check: `/check-batch`'s body limit fits this many. */
  maxBatchChecks: number
  /** Most facts of an imported document: the import's body limit fits this many. */
  maxImportFacts: number
  /** The host's `identify`: a write's actor is the user of the request's identity. */
  identify?: IdentifyFunction | undefined
  /** Between two heartbeat comments of a watch stream (`watch.heartbeatMs`). */
  heartbeatMs: number
}

/** Bytes of the largest valid change of a batch, with room for JSON whitespace: `/batch`'s body limit is this per change. */
export const BATCH_BYTES_PER_CHANGE = 512

/** Bytes of the largest valid check of a batch check (a 128-character user, a 256-character permission), with room for whitespace. */
export const BATCH_BYTES_PER_CHECK = 512

/** Bytes of the largest fact of an import document (a 256-character grant), with room for whitespace: the import's body limit is this per fact. */
export const IMPORT_BYTES_PER_FACT = 300

/** A page's query as the schema passed it (strings) → the engine's options. */
function pageOptions (query: { limit?: string | undefined, cursor?: string | undefined, minRevision?: string | undefined }): PageOptions {
  return {
    limit: query.limit === undefined ? undefined : Number(query.limit),
    cursor: query.cursor,
    minRevision: query.minRevision === undefined ? undefined : Number(query.minRevision)
  }
}

/** The query checks of the long-id fallback, which has no querystring schema of its own (it serves several routes). */
const pageQuery = Compile(PageQuery)
const whoQuery = Compile(WhoQuery)

/** The fallback's query, checked as its route's schema checks it: a coded 400 naming the first error. */
function checkedQuery<T> (validator: typeof pageQuery | typeof whoQuery, query: unknown): T {
  if (validator.Check(query)) return query as T
  // A value that fails the check has at least one error.
  const [first] = validator.Errors(query)
  throw new InvalidInputError('querystring', `${first.instancePath} ${first.message}`.trim())
}

const errors = { '4xx': ErrorReply, '5xx': ErrorReply }

/** The feed's and the watch's query checks, for the long-id fallback route (which has no querystring schema). */
const changesQuery = Compile(ChangesQuery)
const deleteTenantQuery = Compile(DeleteTenantQuery)
const watchQuery = Compile(WatchQuery)

function withRevision<T extends { revision: number }> (reply: FastifyReply, body: T): T {
  reply.header('policy-revision', String(body.revision))
  return body
}

/** Runs a write; a 409 revision conflict answers with the tenant's current revision in `policy-revision` too. */
async function conditional<T> (reply: FastifyReply, write: Promise<T>): Promise<T> {
  try {
    return await write
  } catch (err) {
    const current = (err as { currentRevision?: unknown }).currentRevision
    if (typeof current === 'number') reply.header('policy-revision', String(current))
    throw err
  }
}

/** The decimal query parameters of the audit feed, as the engine takes them. */
function changesOptions (query: { after?: string, limit?: string }) {
  return {
    after: query.after === undefined ? undefined : Number(query.after),
    limit: query.limit === undefined ? undefined : Number(query.limit)
  }
}

export default async function policyRoutes (fastify: FastifyInstance, { engine, bodyLimit, maxBatchChanges, maxBatchChecks, maxImportFacts, identify, heartbeatMs }: PolicyRoutesOptions): Promise<void> {
  /**
   * Who a write acts as: the user of the request's identity when the plugin has `identify` and the
   * request carries one; else undefined (the entry's actor is null). A malformed user is a coded 400
   * (nothing written); an error `identify` throws goes to the host's error handler as it is.
   */
  const actorOf = async (request: FastifyRequest): Promise<string | undefined> => {
    if (identify === undefined) return undefined
    const identity = await identify(request)
    if (typeof identity !== 'object' || identity === null) return undefined
    const user: unknown = identity.user
    assertActor(user)
    return user
  }

  // Bodies are validated strictly (no coercion, extra fields rejected); query and params converted.
  fastify.setValidatorCompiler(validatorCompiler)
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()

  // Each write's route is its operation's name: POST /create-group, /add-permission, …
  const writes: Array<[Operation, TSchema, string]> = [
    ['create-group', GroupBody, 'Create a group in a tenant'],
    ['delete-group', GroupBody, 'Delete a group with its grants, memberships and inclusions (both ways)'],
    ['add-permission', PermissionBody, 'Grant a permission (or wildcard) to a group'],
    ['remove-permission', PermissionBody, 'Revoke a permission from a group'],
    ['assign-user', UserBody, 'Add a user to a group'],
    ['unassign-user', UserBody, 'Remove a user from a group'],
    ['include-group', InclusionBody, 'Make a group include another: its members hold the other\'s grants, transitively'],
    ['exclude-group', InclusionBody, 'Undo an inclusion']
  ]

  for (const [op, body, description] of writes) {
    app.post(`/${op}`, {
      bodyLimit,
      schema: {
        summary: description,
        description: `${description}. Committed, applied locally, then broadcast to every peer; waits at most ackTimeoutMs for their acknowledgements.${op === 'include-group' ? ' 404 FST_POLICY_CACHE_GROUP_NOT_FOUND without either group; 409 FST_POLICY_CACHE_INCLUSION_CYCLE, naming the path, when `includes` already reaches `group` (nothing is written).' : ''}`,
        tags: ['policy'],
        body,
        response: { 200: WriteReply, ...errors }
      }
    }, async (request, reply): Promise<WriteOutcome> => {
      const { tenant, ifRevision, ...fields } = request.body as { tenant: string, group: string, ifRevision?: number }
      const actor = await actorOf(request)
      return withRevision(reply, await conditional(reply, engine.write(tenant, { op, ...fields } as Change, { ifRevision, actor })))
    })
  }

  app.post('/batch', {
    // Room for a batch of maxBatchChanges of the largest changes; never below the other writes' limit.
    bodyLimit: Math.max(bodyLimit, maxBatchChanges * BATCH_BYTES_PER_CHANGE + 1024),
    schema: {
      summary: 'Write several changes atomically',
      description: 'Apply the changes in order in one transaction, at one revision (none when nothing changed), logged as one changelog entry and sent to the peers as one notice. `effects` says which changes had an effect. A failing change (e.g. a group that does not exist and is not created earlier in the batch) writes nothing, its message naming `changes[<index>]`. More than maxBatchChanges → 413 FST_POLICY_CACHE_BATCH_TOO_LARGE.',
      tags: ['policy'],
      body: BatchBody,
      response: { 200: BatchReply, ...errors }
    }
  }, async (request, reply): Promise<BatchOutcome> => {
    const { tenant, changes, ifRevision } = request.body
    const own = changes.map(({ operation, ...fields }) => ({ op: operation, ...fields }) as Change)
    const actor = await actorOf(request)
    return withRevision(reply, await conditional(reply, engine.batch(tenant, own, { ifRevision, actor })))
  })

  app.get('/tenants', {
    schema: {
      summary: 'List the tenants',
      description: 'A page of the tenants that exist (written, and not deleted since), sorted by id, each with its revision, read from the database. `limit` (1 to 1000, default 100) per page; pass `next` as `cursor` for the next page. Unknown query parameters → 400.',
      tags: ['policy'],
      querystring: TenantsQuery,
      response: { 200: TenantsReply, ...errors }
    }
  }, async (request) => {
    const { limit, cursor } = pageOptions(request.query)
    return await engine.tenants({ limit, cursor })
  })

  const deleteTenant = async (request: FastifyRequest, reply: FastifyReply, tenant: string, query: { ifRevision?: string }) => {
    const ifRevision = query.ifRevision === undefined ? undefined : Number(query.ifRevision)
    const actor = await actorOf(request)
    return withRevision(reply, await conditional(reply, engine.deleteTenant(tenant, { ifRevision, actor })))
  }

  app.delete('/tenants/:tenant', {
    schema: {
      summary: 'Delete a tenant',
      description: 'Delete the tenant\'s groups, grants and memberships at one revision, sent to the peers like any write: every instance drops the tenant\'s contents at once. The revision is kept (a tenant created again goes on from it). 404 FST_POLICY_CACHE_TENANT_NOT_FOUND for a tenant that does not exist; `ifRevision` (query) makes it conditional (409).',
      tags: ['policy'],
      params: TenantParams,
      querystring: DeleteTenantQuery,
      response: { 200: DeleteTenantReply, ...errors }
    }
  }, async (request, reply) => await deleteTenant(request, reply, request.params.tenant, request.query))

  app.get('/tenants/:tenant/export', {
    schema: {
      summary: 'Export a tenant',
      description: 'The tenant\'s whole policy as one document, read from the database at one revision: what `PUT /tenants/:tenant/import` takes. 404 FST_POLICY_CACHE_TENANT_NOT_FOUND for a tenant that does not exist.',
      tags: ['policy'],
      params: TenantParams,
      response: { 200: ExportReply, ...errors }
    }
  }, async (request, reply) => withRevision(reply, await engine.exportTenant(request.params.tenant)))

  const importTenant = async (request: FastifyRequest, reply: FastifyReply, tenant: string) => {
    const { ifRevision, ...document } = request.body as ImportDocument & { ifRevision?: number }
    const actor = await actorOf(request)
    return withRevision(reply, await conditional(reply, engine.importTenant(tenant, document, { ifRevision, actor })))
  }
  // Room for a document of maxImportFacts of the largest facts; never below the writes' limit.
  const importBodyLimit = Math.max(bodyLimit, maxImportFacts * IMPORT_BYTES_PER_FACT + 1024)

  app.put('/tenants/:tenant/import', {
    bodyLimit: importBodyLimit,
    schema: {
      summary: 'Import a tenant',
      description: 'Replace the tenant\'s policy with an export document\'s (its `tenant`, when present, must be the path\'s) at one revision whose changelog entry holds the difference — the peers apply it as a batch\'s. Nothing changes when the tenant holds it already; a tenant that does not exist is created. The document is validated whole, nothing written otherwise: 400 naming the place, 413 FST_POLICY_CACHE_IMPORT_TOO_LARGE over maxImportFacts groups, grants and memberships. `ifRevision` as for the writes.',
      tags: ['policy'],
      params: TenantParams,
      body: ImportBody,
      response: { 200: WriteReply, ...errors }
    }
  }, async (request, reply) => await importTenant(request, reply, request.params.tenant))

  const changesPage = async (reply: FastifyReply, tenant: string, query: { after?: string, limit?: string }) => {
    const feed = await engine.changes(tenant, changesOptions(query))
    return withRevision(reply, { ...feed, entries: feed.entries.map(wireEntry) })
  }

  app.get('/tenants/:tenant/changes', {
    schema: {
      summary: 'Read a tenant\'s audit feed',
      description: 'The changelog entries after `after` (default 0), at most `limit` (1–1000, default 100), in revision order, each with the change, the instance that wrote it, who made it (the user of the request\'s identity, or the decorator\'s `actor`) and when (epoch ms, the database\'s clock). Read from the database. `after` at or beyond the current revision: no entries. Entries after `after` already pruned (changelogRetention) → 410 FST_POLICY_CACHE_CHANGES_PRUNED naming the oldest kept.',
      tags: ['policy'],
      params: TenantParams,
      querystring: ChangesQuery,
      response: { 200: ChangesReply, ...errors }
    }
  }, async (request, reply) => await changesPage(reply, request.params.tenant, request.query))

  app.get('/tenants/:tenant/watch', {
    schema: {
      summary: 'Watch a tenant\'s changes (Server-Sent Events)',
      description: 'Each change of the tenant as this instance applies it — its own writes, peers\' (a notice, a catch-up, a reload) and batches alike — as a `change` event whose id is its revision and whose data is the audit feed\'s entry (one event per revision: a batch\'s changes in one), in revision order without a gap or a duplicate. A client reconnecting with `Last-Event-ID` (or `?after=`) gets the changes after it from the changelog first, then live ones; when they were pruned (changelogRetention), a `reset` event (code FST_POLICY_CACHE_CHANGES_PRUNED, the oldest kept and the revision the stream continues after): read the tenant again. A client that falls watch.maxBuffered events behind is dropped (a final `end` event FST_POLICY_CACHE_WATCH_OVERFLOW, if it can be written); shutdown ends every stream (`end` FST_POLICY_CACHE_CLOSING). Beyond watch.maxWatchers open streams → 503 FST_POLICY_CACHE_TOO_MANY_WATCHERS; a revision past the database\'s → 412 FST_POLICY_CACHE_REVISION_AHEAD. A comment every watch.heartbeatMs.',
      tags: ['policy'],
      params: TenantParams,
      querystring: WatchQuery,
      headers: WatchHeaders,
      response: { 200: WatchStream, ...errors }
    }
  }, async (request, reply) => {
    await streamWatch(engine, reply, request.params.tenant, resumeAfter(request.headers['last-event-id'], request.query.after), heartbeatMs)
  })

  app.get('/check-access', {
    schema: {
      summary: 'Check a permission',
      description: 'May the user do the permission in the tenant? Answered from memory; `minRevision` catches up first when behind.',
      tags: ['check'],
      querystring: CheckQuery,
      response: { 200: CheckReply, ...errors }
    }
  }, async (request, reply) => {
    const { tenant, user, permission, minRevision } = request.query
    return withRevision(reply, await engine.decide(tenant, user, permission, { minRevision: minRevision === undefined ? undefined : Number(minRevision) }))
  })

  app.post('/check-batch', {
    // Room for maxBatchChecks of the largest checks; never below the writes' limit.
    bodyLimit: Math.max(bodyLimit, maxBatchChecks * BATCH_BYTES_PER_CHECK + 1024),
    schema: {
      summary: 'Check many permissions at once',
      description: 'Answer many (user, permission) pairs of one tenant from one revision, from memory; `minRevision` catches up first when behind. More than maxBatchChecks → 413 FST_POLICY_CACHE_CHECK_BATCH_TOO_LARGE.',
      tags: ['check'],
      body: CheckBatchBody,
      response: { 200: CheckBatchReply, ...errors }
    }
  }, async (request, reply) => {
    const { tenant, checks, minRevision } = request.body
    return withRevision(reply, await engine.checkBatch(tenant, checks, { minRevision }))
  })

  const pageNote = ' Sorted, `limit` (1 to 1000, default 100) per page; pass `next` as `cursor` for the next page: it resumes after the last key seen, at the revision that page is served from (pass the first page\'s `revision` as `minRevision` to never go back). Unknown query parameters → 400.'

  app.get('/tenants/:tenant/groups', {
    schema: {
      summary: 'List a tenant\'s groups',
      description: 'A page of the tenant\'s group names, as this instance has them cached.' + pageNote,
      tags: ['policy'],
      params: TenantParams,
      querystring: PageQuery,
      response: { 200: GroupsReply, ...errors }
    }
  }, async (request, reply) => withRevision(reply, await engine.groups(request.params.tenant, pageOptions(request.query))))

  app.get('/tenants/:tenant/groups/:group/users', {
    schema: {
      summary: 'List a group\'s members',
      description: 'A page of the group\'s users; 404 FST_POLICY_CACHE_GROUP_NOT_FOUND without the group.' + pageNote,
      tags: ['policy'],
      params: GroupParams,
      querystring: PageQuery,
      response: { 200: GroupUsersReply, ...errors }
    }
  }, async (request, reply) => withRevision(reply, await engine.groupUsers(request.params.tenant, request.params.group, pageOptions(request.query))))

  app.get('/tenants/:tenant/groups/:group/permissions', {
    schema: {
      summary: 'List a group\'s grants',
      description: 'A page of the group\'s grants (wildcards as granted); 404 FST_POLICY_CACHE_GROUP_NOT_FOUND without the group.' + pageNote,
      tags: ['policy'],
      params: GroupParams,
      querystring: PageQuery,
      response: { 200: GroupPermissionsReply, ...errors }
    }
  }, async (request, reply) => withRevision(reply, await engine.groupPermissions(request.params.tenant, request.params.group, pageOptions(request.query))))

  app.get('/tenants/:tenant/who', {
    schema: {
      summary: 'Who holds a permission',
      description: 'Reverse lookup: a page of the users holding the permission, each with the groups through which they do — a grant of it, or a wildcard over it (`documents:*`, `*`).' + pageNote,
      tags: ['policy'],
      params: TenantParams,
      querystring: WhoQuery,
      response: { 200: WhoReply, ...errors }
    }
  }, async (request, reply) => {
    const { permission, ...page } = request.query
    return withRevision(reply, await engine.who(request.params.tenant, permission, pageOptions(page)))
  })

  app.get('/tenants/:tenant', {
    schema: {
      summary: 'View a tenant',
      description: 'A tenant\'s groups with their permissions and users, as this instance has them cached',
      tags: ['policy'],
      params: TenantParams,
      response: { 200: TenantReply, ...errors }
    }
  }, async (request, reply) => withRevision(reply, await engine.tenant(request.params.tenant)))

  app.get('/tenants/:tenant/users/:user', {
    schema: {
      summary: 'View a user',
      description: 'A user\'s groups and effective grants in a tenant',
      tags: ['policy'],
      params: UserParams,
      response: { 200: UserReply, ...errors }
    }
  }, async (request, reply) => withRevision(reply, await engine.user(request.params.tenant, request.params.user)))

  // The same views, listings and lookup for ids longer than the host's `maxParamLength` (Fastify's
  // default is 100, ids go to 128): the router skips a parametric route whose parameter is too long —
  // it would answer 414 — and falls back to this wildcard, which has no length limit. Hidden from
  // OpenAPI: the routes above document the paths. The listings' queries are checked here as their
  // routes' schemas check them.
  app.get('/tenants/*', {
    schema: {
      hide: true,
      params: LongIdParams,
      response: { 200: Type.Union([TenantReply, UserReply, GroupsReply, GroupUsersReply, GroupPermissionsReply, WhoReply, ChangesReply, ExportReply]), ...errors }
    }
  }, async (request, reply) => {
    const parts = request.params['*'].split('/')
    if (parts.length === 1) return withRevision(reply, await engine.tenant(parts[0]))
    if (parts.length === 2 && parts[1] === 'export') return withRevision(reply, await engine.exportTenant(parts[0]))
    if (parts.length === 2 && parts[1] === 'changes') {
      // No querystring schema on this route: checked here, as the feed's own route checks it.
      if (!changesQuery.Check(request.query)) throw new InvalidInputError('querystring', 'takes after and limit only, each a decimal integer')
      return await changesPage(reply, parts[0], request.query)
    }
    if (parts.length === 2 && parts[1] === 'watch') {
      if (!watchQuery.Check(request.query)) throw new InvalidInputError('querystring', 'takes after only, a decimal integer')
      await streamWatch(engine, reply, parts[0], resumeAfter(request.headers['last-event-id'], request.query.after), heartbeatMs)
      return
    }
    if (parts.length === 3 && parts[1] === 'users') return withRevision(reply, await engine.user(parts[0], parts[2]))
    if (parts.length === 2 && parts[1] === 'groups') {
      return withRevision(reply, await engine.groups(parts[0], pageOptions(checkedQuery(pageQuery, request.query))))
    }
    if (parts.length === 2 && parts[1] === 'who') {
      const { permission, ...page } = checkedQuery<{ permission: string }>(whoQuery, request.query)
      return withRevision(reply, await engine.who(parts[0], permission, pageOptions(page)))
    }
    if (parts.length === 4 && parts[1] === 'groups' && parts[3] === 'users') {
      return withRevision(reply, await engine.groupUsers(parts[0], parts[2], pageOptions(checkedQuery(pageQuery, request.query))))
    }
    if (parts.length === 4 && parts[1] === 'groups' && parts[3] === 'permissions') {
      return withRevision(reply, await engine.groupPermissions(parts[0], parts[2], pageOptions(checkedQuery(pageQuery, request.query))))
    }
    return reply.callNotFound()
  })

  // The lifecycle's writes for long tenant ids, likewise.
  app.delete('/tenants/*', { schema: { hide: true, params: LongIdParams, response: { 200: DeleteTenantReply, ...errors } } }, async (request, reply) => {
    const parts = request.params['*'].split('/')
    if (parts.length !== 1) return reply.callNotFound()
    if (!deleteTenantQuery.Check(request.query)) throw new InvalidInputError('querystring', 'takes ifRevision only, a decimal integer')
    return await deleteTenant(request, reply, parts[0], request.query)
  })
  app.put('/tenants/*', { bodyLimit: importBodyLimit, schema: { hide: true, params: LongIdParams, body: ImportBody, response: { 200: WriteReply, ...errors } } }, async (request, reply) => {
    const parts = request.params['*'].split('/')
    if (parts.length !== 2 || parts[1] !== 'import') return reply.callNotFound()
    return await importTenant(request, reply, parts[0])
  })

  app.post('/refresh-tenant', {
    bodyLimit,
    schema: {
      summary: 'Reload a tenant',
      description: 'Reload a tenant fully from the database (this instance only)',
      tags: ['ops'],
      body: TenantBody,
      response: { 200: RefreshReply, ...errors }
    }
  }, async (request, reply) => withRevision(reply, await engine.refresh(request.body.tenant)))
}
