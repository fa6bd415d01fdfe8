/**
 * Type tests for the public surface, checked by `tsc --noEmit` in `npm test` (not run by tap).
 * A line marked @ts-expect-error fails the type-check if it ever compiles.
 */
import Fastify from 'fastify'
import { Kysely } from 'kysely'
import policyCache, { dnsPeers, type DnsPeersOptions, type PolicyCacheApi, type PolicyCacheOptions, type PolicyStore, type WriteOutcome, type PeerStatus, type AuditEntry, type Watch, type WatchEnd } from '../../lib/plugin.js'

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true> (_ok: T): void {}

export async function usage (db: Kysely<any>, store: PolicyStore): Promise<void> {
  const app = Fastify()
  await app.register(policyCache, { db, peers: ['http://10.0.0.2:3000'], webhookSecret: ['new-secret-1234567', 'old-secret-1234567'] })
  await app.register(policyCache, { db: store, peers: async () => ['http://10.0.0.2:3000'], webhookSecret: 'x'.repeat(16) })
  await app.register(policyCache, { prefix: '/policy', routeHooks: { onRequest: async () => {} } })

  // The decorator is typed by declaration merging.
  expectType<Equal<Awaited<ReturnType<typeof app.policyCache.check>>, boolean>>(true)
  expectType<Equal<ReturnType<typeof app.policyCache.checkSync>, boolean | undefined>>(true)
  expectType<Equal<Awaited<ReturnType<typeof app.policyCache.assignUser>>, WriteOutcome>>(true)
  expectType<Equal<ReturnType<typeof app.policyCache.peers>, PeerStatus[]>>(true)
  const outcome = await app.policyCache.createGroup('t', 'g')
  expectType<Equal<typeof outcome.peers, { acked: number, total: number }>>(true)
  expectType<Equal<Awaited<ReturnType<typeof app.policyCache.decide>>, { allowed: boolean, revision: number }>>(true)
  await app.policyCache.decide('t', 'u', 'p', { minRevision: outcome.revision })
  // Batches and conditional writes.
  const batch = await app.policyCache.batch('t', [{ op: 'create-group', group: 'g' }, { op: 'assign-user', group: 'g', user: 'u' }], { ifRevision: outcome.revision })
  expectType<Equal<typeof batch.effects, boolean[]>>(true)
  await app.policyCache.assignUser('t', 'g', 'u', { ifRevision: batch.revision })
  // @ts-expect-error a batch's changes are Change objects
  await app.policyCache.batch('t', [{ operation: 'create-group', group: 'g' }])
  // @ts-expect-error ifRevision is a number
  await app.policyCache.createGroup('t', 'g', { ifRevision: '3' })

  // Listing, reverse lookup and batch check.
  const groups = await app.policyCache.groups('t', { limit: 10, minRevision: batch.revision })
  expectType<Equal<typeof groups.next, string | null>>(true)
  expectType<Equal<typeof groups.groups, string[]>>(true)
  await app.policyCache.groupUsers('t', 'g', { cursor: groups.next ?? undefined })
  expectType<Equal<Awaited<ReturnType<typeof app.policyCache.groupUsers>>['users'], string[]>>(true)
  expectType<Equal<Awaited<ReturnType<typeof app.policyCache.groupPermissions>>['permissions'], string[]>>(true)
  expectType<Equal<Awaited<ReturnType<typeof app.policyCache.who>>['users'], Array<{ user: string, groups: string[], chains: string[][] }>>>(true)
  await app.policyCache.checkBatch('t', [{ user: 'u', permission: 'p' }], { minRevision: 1 })
  expectType<Equal<Awaited<ReturnType<typeof app.policyCache.checkBatch>>['results'], boolean[]>>(true)
  await app.register(policyCache, { maxBatchChecks: 100 })
  // @ts-expect-error limit is a number
  await app.policyCache.groups('t', { limit: '10' })
  // @ts-expect-error a check is { user, permission }
  await app.policyCache.checkBatch('t', [['u', 'p']])

  // The tenant lifecycle: an export document is what an import takes.
  const tenants = await app.policyCache.tenants({ limit: 10, cursor: groups.next ?? undefined })
  expectType<Equal<typeof tenants.tenants, Array<{ tenant: string, revision: number }>>>(true)
  await app.policyCache.tenants({ cursor: tenants.next ?? undefined })
  const exported = await app.policyCache.exportTenant('t')
  expectType<Equal<typeof exported.format, 1>>(true)
  const imported = await app.policyCache.importTenant('t', exported, { ifRevision: exported.revision, actor: 'ci' })
  expectType<Equal<typeof imported, WriteOutcome>>(true)
  const deleted = await app.policyCache.deleteTenant('t', { ifRevision: imported.revision })
  expectType<Equal<typeof deleted.deleted, true>>(true)
  await app.policyCache.createGroup('t', 'g', { ifRevision: deleted.revision })
  await app.register(policyCache, { maxImportFacts: 50000 })
  // @ts-expect-error the document's format is 1
  await app.policyCache.importTenant('t', { groups: [], format: 2 })
  // @ts-expect-error the listing reads the database: no minRevision
  await app.policyCache.tenants({ minRevision: 1 })

  const options: PolicyCacheOptions[] = []
  await app.register(policyCache, { circuitBreaker: { failureThreshold: 5 }, retry: { maxRetryAfterMs: 10000 } })
  type Peer = ReturnType<typeof app.policyCache.peers>[number]
  expectType<Equal<Peer['state'], 'up' | 'down' | 'unknown' | 'gone'>>(true)
  expectType<Equal<Peer['lag'], Array<{ tenant: string, acked: number | null, revision: number }>>>(true)
  // @ts-expect-error cooldownMs is a number
  options.push({ circuitBreaker: { cooldownMs: '30s' } })
  // @ts-expect-error ackTimeoutMs is a number
  await app.register(policyCache, { ackTimeoutMs: '200' })
  // @ts-expect-error peers are strings
  options.push({ peers: [3000] })
  // @ts-expect-error check takes a permission
  await app.policyCache.check('t', 'u')

  // The decorator is the documented public interface; the engine's internals are not on it.
  expectType<Equal<typeof app.policyCache, PolicyCacheApi>>(true)
  expectType<Equal<ReturnType<typeof app.policyCache.warm>, Promise<void>>>(true)
  await app.policyCache.warm(['t1', 't2'])
  expectType<Equal<ReturnType<typeof app.policyCache.watch>, Promise<Watch>>>(true)
  for await (const event of await app.policyCache.watch('t1', { after: 3 })) {
    if (event.type === 'change') expectType<Equal<typeof event.entry, AuditEntry>>(true)
    else if (event.type === 'reset') expectType<Equal<typeof event.revision, number>>(true)
    else expectType<Equal<typeof event, WatchEnd>>(true)
  }
  // @ts-expect-error noticed is the webhook receiver's, not the host's
  await app.policyCache.noticed([{ tenant: 't', revision: 1 }])
  // @ts-expect-error sync is the anti-entropy timer's
  await app.policyCache.sync()
  // @ts-expect-error ping is /health's
  await app.policyCache.ping()
  // @ts-expect-error writes go through the six named operations
  await app.policyCache.write('t', { op: 'create-group', group: 'g' })
}

export async function shapedRoutes (): Promise<void> {
  const app = Fastify()
  await app.register(policyCache, { routes: false, webhookSecret: 'x'.repeat(16) })
  await app.register(policyCache, { routes: { policy: { prefix: '/admin' }, ops: { health: '/healthz', servers: false }, webhook: true } })
  await app.register(policyCache, { routes: { policy: false }, preload: ['t1'], startupTimeoutMs: 3000 })
  // @ts-expect-error a path or false
  await app.register(policyCache, { routes: { ops: { health: true } } })
  // @ts-expect-error preload lists tenant ids
  await app.register(policyCache, { preload: 't1' })
}

export async function guardUsage (): Promise<void> {
  const app = Fastify()
  await app.register(policyCache, { identify: (request) => ({ tenant: String(request.headers['x-tenant']), user: 'u' }) })
  await app.register(policyCache, { identify: async () => undefined })
  app.get('/documents', { config: { policy: 'documents:read' } }, async () => ({}))
  app.get('/reports', { preHandler: app.policyCache.require('reports:read') }, async () => ({}))
  // @ts-expect-error config.policy is a permission string
  app.get('/x', { config: { policy: ['documents:read'] } }, async () => ({}))
  // @ts-expect-error identify returns { tenant, user }
  await app.register(policyCache, { identify: () => ({ tenant: 't' }) })
}

export async function dnsPeersUsage (): Promise<void> {
  const app = Fastify()
  const peers = dnsPeers({ name: 'policy.default.svc.cluster.local', port: 3000 })
  expectType<Equal<typeof peers, () => Promise<string[]>>>(true)
  await app.register(policyCache, { peers, publicUrl: 'http://10.0.0.2:3000', webhookSecret: 'x'.repeat(16) })
  const options: DnsPeersOptions = { name: 'policy', port: 8443, protocol: 'https', path: '/policy', servers: ['10.96.0.10', '[::1]:53'], family: 'both', timeoutMs: 500 }
  expectType<Equal<DnsPeersOptions['family'], 'auto' | 'ipv4' | 'ipv6' | 'both' | undefined>>(true)
  dnsPeers(options)
  // @ts-expect-error the port is a number
  dnsPeers({ name: 'policy', port: '3000' })
  // @ts-expect-error http or https
  dnsPeers({ name: 'policy', port: 3000, protocol: 'ftp' })
  // @ts-expect-error the name is required
  dnsPeers({ port: 3000 })
  // @ts-expect-error ipv4, ipv6, both or auto
  dnsPeers({ name: 'policy', port: 3000, family: 'inet6' })
}

export async function transportUsage (db: import('kysely').Kysely<any>): Promise<void> {
  const app = Fastify()
  await app.register(policyCache, { transport: 'webhook' })
  await app.register(policyCache, { db, webhookSecret: 'x'.repeat(16), transport: { type: 'pg-notify', connection: 'postgres://db/app' } })
  await app.register(policyCache, {
    db,
    webhookSecret: 'x'.repeat(16),
    transport: { type: 'pg-notify', connection: { host: 'db' }, channel: 'app_notify', probeIntervalMs: 1000, reconnect: { maxDelayMs: 2000 }, maxPayloadBytes: 4000 }
  })
  // @ts-expect-error pg-notify needs its listening connection
  await app.register(policyCache, { transport: { type: 'pg-notify' } })
  await app.register(policyCache, { webhookSecret: 'x'.repeat(16), transport: { type: 'nats', servers: ['nats://a:4222', 'nats://b:4222'], subject: 'app.notify', connection: { token: 't' } } })
  await app.register(policyCache, { webhookSecret: 'x'.repeat(16), transport: { type: 'redis', connection: 'redis://cache:6379', channel: 'app_notify', probeTimeoutMs: 500 } })
  // @ts-expect-error nats needs its servers
  await app.register(policyCache, { transport: { type: 'nats' } })
  // @ts-expect-error redis needs its connection
  await app.register(policyCache, { transport: { type: 'redis' } })
  // @ts-expect-error a broker transport is an object, not a name
  await app.register(policyCache, { transport: 'nats' })
}
