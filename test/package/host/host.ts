/**
 * A host app as a user outside this repository writes it, compiled by test/package/consumer.test.ts
 * against the packed tarball (tsc, skipLibCheck off, nodenext and bundler resolution) with the
 * lowest and the newest fastify/kysely the peer ranges allow, then run with node. It prints one
 * JSON line of what it saw; lines marked @ts-expect-error fail the compile if the types went `any`.
 */
import Fastify, { type FastifyRequest, type RouteShorthandOptions } from 'fastify'
import type { Kysely } from 'kysely'
import policyCache, { createSqliteDb, errors, replaceChanges, type Identity, type TenantDocument, type TenantsPage, type WriteOutcome } from 'fastify-policy-cache'

function identify (request: FastifyRequest): Identity | undefined {
  const tenant = request.headers['x-tenant']
  const user = request.headers['x-user']
  return typeof tenant === 'string' && typeof user === 'string' ? { tenant, user } : undefined
}

const db: Kysely<any> = createSqliteDb(':memory:')
const app = Fastify()
app.addHook('onClose', async () => { await db.destroy() })
await app.register(policyCache, { db, identify, metrics: process.env.METRICS === '1' })
app.get('/documents', { config: { policy: 'documents:read' } }, async () => ({ documents: [] }))
// @ts-expect-error config.policy is typed by the plugin's declaration merging: a string
export const misTyped: RouteShorthandOptions = { config: { policy: 42 } }

const written: WriteOutcome = await app.policyCache.createGroup('acme', 'readers')
await app.policyCache.addPermission('acme', 'readers', 'documents:read')
await app.policyCache.assignUser('acme', 'readers', 'alice')
const allowed: boolean = await app.policyCache.check('acme', 'alice', 'documents:read')
// The tenant lifecycle: a copy of acme under another name, from its export document.
const exported: TenantDocument = await app.policyCache.exportTenant('acme')
const copied: WriteOutcome = await app.policyCache.importTenant('acme-copy', { ...exported, tenant: 'acme-copy' })
const listed: TenantsPage = await app.policyCache.tenants({ limit: 10 })

const forbidden = new errors.ForbiddenError('documents:read')
const code: 'FST_POLICY_CACHE_FORBIDDEN' = forbidden.code
// @ts-expect-error the error classes are typed, not `any`: ForbiddenError takes the permission
errors.ForbiddenError()

const documents = async (headers: Record<string, string>): Promise<number> =>
  (await app.inject({ url: '/documents', headers })).statusCode
const checkAccess = await app.inject('/check-access?tenant=acme&user=alice&permission=documents:read')
const metrics = await app.inject('/metrics')

console.log(JSON.stringify({
  written: { changed: written.changed, revision: written.revision },
  allowed,
  lifecycle: { copied: copied.revision, listed: listed.tenants.map((row) => row.tenant), emptied: replaceChanges(exported.groups, []).length },
  code,
  guard: {
    anonymous: await documents({}),
    bob: await documents({ 'x-tenant': 'acme', 'x-user': 'bob' }),
    alice: await documents({ 'x-tenant': 'acme', 'x-user': 'alice' })
  },
  checkAccess: checkAccess.json(),
  metrics: metrics.statusCode === 200 && metrics.body.includes('policy_cache_checks_total')
}))
await app.close()
