/**
 * The `routes` option: the policy routes, each ops route and the webhook receiver mounted, moved or
 * dropped independently; the receiver stays whenever a secret is set (peers need it); a route the
 * host also declares fails registration naming the option to change; peers behind a register prefix
 * are listed with it.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { test, type Test } from 'tap'
import policyCache, { type PolicyCacheOptions } from '../../lib/plugin.js'
import { MemoryPolicyStore } from '../../examples/custom-store.js'
import { buildApp, SECRET } from '../helpers/app.js'

/** The plugin's options with Fastify's register prefix. */
type Registered = PolicyCacheOptions & { prefix?: string }

async function status (app: FastifyInstance, method: 'GET' | 'POST', url: string): Promise<number> {
  const payload = method === 'POST' ? { tenant: 't1', group: 'g' } : undefined
  return (await app.inject({ method, url, payload })).statusCode
}

/** Two instances on one shared store, listening on loopback: `a` lists `b` (at `b`'s URL + `listed`) as its peer. */
async function pair (t: Test, { a: aOptions = {}, b: bOptions = {}, listed = '' }: { a?: Registered, b?: Registered, listed?: string }) {
  const store = new MemoryPolicyStore()
  const b = Fastify()
  t.teardown(() => b.close())
  await b.register(policyCache, { db: store, serverId: 'b', webhookSecret: SECRET, syncIntervalMs: 0, ...bOptions })
  const bUrl = await b.listen({ port: 0, host: '127.0.0.1' })
  const a = Fastify()
  t.teardown(() => a.close())
  // A generous acknowledgement wait: the outcome, not the speed, is under test.
  await a.register(policyCache, { db: store, serverId: 'a', webhookSecret: SECRET, syncIntervalMs: 0, peers: [bUrl + listed], ackTimeoutMs: 10000, ...aOptions })
  await a.ready()
  // b caches the tenant, so that a notice has something to catch up.
  await b.policyCache.revision('t1')
  return { a, b }
}

test('routes: false keeps the webhook receiver when a secret is set: peers are acknowledged, not answered 404', async (t) => {
  const { a, b } = await pair(t, { b: { routes: false } })
  t.equal(await status(b, 'GET', '/health'), 404, 'no ops routes')
  t.equal(await status(b, 'POST', '/create-group'), 404, 'no policy routes')

  await a.policyCache.createGroup('t1', 'readers')
  await a.policyCache.addPermission('t1', 'readers', 'doc:read')
  const outcome = await a.policyCache.assignUser('t1', 'readers', 'alice')
  t.same(outcome.peers, { acked: 1, total: 1 }, 'b acknowledged')
  t.equal(b.policyCache.checkSync('t1', 'alice', 'doc:read'), true, 'and answers from the acknowledged revision at once')
})

test('without a secret, routes: false mounts nothing; routes.webhook: false drops the receiver explicitly', async (t) => {
  const bare = await buildApp(t, { routes: false })
  t.equal(await status(bare, 'POST', '/webhook/refresh'), 404)
  const noReceiver = await buildApp(t, { webhookSecret: SECRET, routes: { webhook: false } })
  t.equal(await status(noReceiver, 'POST', '/webhook/refresh'), 404)
  t.equal(await status(noReceiver, 'GET', '/health'), 200, 'the rest stays')
})

test('the policy routes can be dropped or moved under a prefix of their own, still behind routeHooks', async (t) => {
  const dropped = await buildApp(t, { webhookSecret: SECRET, routes: { policy: false } })
  t.equal(await status(dropped, 'POST', '/create-group'), 404)
  t.equal(await status(dropped, 'GET', '/check-access?tenant=t1&user=u&permission=p'), 404)
  t.equal(await status(dropped, 'GET', '/health'), 200)
  t.equal(await status(dropped, 'POST', '/webhook/refresh'), 401, 'the signed receiver answers')

  const hooked: string[] = []
  const moved = Fastify()
  t.teardown(() => moved.close())
  await moved.register(policyCache, {
    prefix: '/pc',
    syncIntervalMs: 0,
    routes: { policy: { prefix: '/admin' } },
    routeHooks: { onRequest: async (request) => { hooked.push(request.url) } }
  })
  t.equal(await status(moved, 'POST', '/pc/admin/create-group'), 200)
  t.equal(await status(moved, 'POST', '/pc/create-group'), 404)
  t.equal(await status(moved, 'GET', '/pc/health'), 200, 'ops routes stay under the register prefix only')
  t.same(hooked, ['/pc/admin/create-group'], 'routeHooks run on the moved policy routes only')
})

test('each ops route can be renamed, prefixed or dropped', async (t) => {
  const app = await buildApp(t, { routes: { ops: { prefix: '/ops', health: '/healthz', servers: false } } })
  t.equal(await status(app, 'GET', '/ops/healthz'), 200)
  t.equal(await status(app, 'GET', '/health'), 404)
  t.equal(await status(app, 'GET', '/ops/servers'), 404)
  t.equal(await status(app, 'GET', '/servers'), 404)
  t.equal(await status(app, 'POST', '/create-group'), 200, 'the policy routes stay')

  const none = await buildApp(t, { routes: { ops: false } })
  t.equal(await status(none, 'GET', '/health'), 404)
  t.equal(await status(none, 'GET', '/servers'), 404)
})

test('a host route taking one of the plugin\'s fails registration naming the option, whichever comes first', async (t) => {
  // The host's first.
  const first = Fastify()
  t.teardown(() => first.close())
  first.get('/health', async () => ({ mine: true }))
  await t.rejects(async () => { await first.register(policyCache, { syncIntervalMs: 0 }).ready() }, {
    code: 'FST_POLICY_CACHE_ROUTE_CONFLICT',
    message: /fastify-policy-cache and another route both declare GET \/health; .*"routes\.ops\.health"/
  })

  // The plugin's first: the host's declaration throws.
  const second = Fastify()
  t.teardown(() => second.close())
  await second.register(policyCache, { syncIntervalMs: 0, webhookSecret: SECRET })
  t.throws(() => second.get('/servers', async () => ({})), { code: 'FST_POLICY_CACHE_ROUTE_CONFLICT', message: /GET \/servers; .*"routes\.ops\.servers"/ })
  t.throws(() => second.post('/create-group', async () => ({})), { code: 'FST_POLICY_CACHE_ROUTE_CONFLICT', message: /"routes\.policy"/ })
  t.throws(() => second.post('/webhook/refresh', async () => ({})), { code: 'FST_POLICY_CACHE_ROUTE_CONFLICT', message: /register "prefix"/ })
  // In a child plugin, the conflict fails ready().
  const third = Fastify()
  t.teardown(() => third.close())
  await third.register(policyCache, { syncIntervalMs: 0 })
  third.register(async (child) => { child.get('/health', async () => ({})) })
  await t.rejects(async () => { await third.ready() }, { code: 'FST_POLICY_CACHE_ROUTE_CONFLICT' })
  t.doesNotThrow(() => second.post('/health', async () => ({})), 'another method on the same path is no conflict')

  const metrics = Fastify()
  t.teardown(() => metrics.close())
  metrics.get('/metrics', async () => 'mine')
  await t.rejects(async () => { await metrics.register(policyCache, { syncIntervalMs: 0, metrics: true }).ready() },
    { code: 'FST_POLICY_CACHE_ROUTE_CONFLICT', message: /GET \/metrics; .*"metrics\.path"/ })

  // Moved out of the way, both live.
  const host = Fastify()
  t.teardown(() => host.close())
  host.get('/health', async () => ({ mine: true }))
  await host.register(policyCache, { syncIntervalMs: 0, routes: { ops: { health: '/policy-health' } } })
  t.same((await host.inject({ url: '/health' })).json(), { mine: true })
  t.equal(await status(host, 'GET', '/policy-health'), 200)
})

test('peers behind a register prefix are listed with it: a peer URL is the base the receiver is mounted under', async (t) => {
  const listedWithPrefix = await pair(t, { a: { prefix: '/policy' }, b: { prefix: '/policy' }, listed: '/policy' })
  const outcome = await listedWithPrefix.a.policyCache.createGroup('t1', 'readers')
  t.same(outcome.peers, { acked: 1, total: 1 }, 'listed with its prefix, the peer acknowledges')
  t.same(await listedWithPrefix.b.policyCache.cachedRevisions(), [['t1', outcome.revision]], 'and is at the write\'s revision')

  const listedWithout = await pair(t, { a: { prefix: '/policy' }, b: { prefix: '/policy' } })
  const missed = await listedWithout.a.policyCache.createGroup('t1', 'writers')
  t.same(missed.peers, { acked: 0, total: 1 }, 'listed without it, the notice meets a 404')
  t.match(listedWithout.a.policyCache.peers(), [{ state: 'down', lastError: /404/ }])
})
