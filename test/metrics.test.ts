/** Prometheus metrics at /metrics: engine and cache counters, deliveries per peer, propagation, lag. */
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { register as globalRegistry, Registry } from 'prom-client'
import { test } from 'tap'
import policyCache, { type PolicyCacheOptions } from '../lib/plugin.js'
import { buildApp, SECRET, tempDir } from './helpers/app.js'
import { freePort, startCluster } from './helpers/cluster.js'
import { startProxy } from './helpers/proxy.js'

/** The value of one sample in a Prometheus text exposition, or undefined when absent. */
function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const rendered = Object.entries(labels).map(([key, value]) => `${key}="${value}"`).join(',')
  const prefix = rendered === '' ? `${name} ` : `${name}{${rendered}} `
  const line = text.split('\n').find((l) => l.startsWith(prefix))
  return line === undefined ? undefined : Number(line.slice(prefix.length))
}

async function scrape (app: FastifyInstance, url = '/metrics'): Promise<string> {
  const res = await app.inject(url)
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode}`)
  return res.body
}

test('metrics: off by default; on, the engine\'s counters are read at scrape time in a registry of its own', async (t) => {
  const off = await buildApp(t)
  t.equal((await off.inject('/metrics')).statusCode, 404)

  const app = await buildApp(t, { metrics: true })
  const other = await buildApp(t, { metrics: true })
  await app.policyCache.createGroup('t1', 'readers')
  await app.policyCache.createGroup('t1', 'readers')
  await app.policyCache.addPermission('t1', 'readers', 'documents:read')
  await app.policyCache.assignUser('t1', 'readers', 'alice')
  t.equal(await app.policyCache.check('t1', 'alice', 'documents:read'), true)
  t.equal(app.policyCache.checkSync('t1', 'alice', 'documents:read'), true)
  t.equal(app.policyCache.checkSync('t1', 'bob', 'documents:read'), false)
  await app.inject('/check-access?tenant=t1&user=bob&permission=documents:write')
  await app.policyCache.check('t2', 'alice', 'documents:read')

  const res = await app.inject('/metrics')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const text = res.body
  t.equal(sample(text, 'policy_cache_checks_total', { result: 'allowed' }), 2)
  t.equal(sample(text, 'policy_cache_checks_total', { result: 'denied' }), 3)
  t.equal(sample(text, 'policy_cache_writes_total', { changed: 'true' }), 3)
  t.equal(sample(text, 'policy_cache_writes_total', { changed: 'false' }), 1)
  t.equal(sample(text, 'policy_cache_cache_loads_total'), 2, 't1 and t2 loaded once each')
  t.equal(sample(text, 'policy_cache_cache_misses_total'), 2)
  t.ok((sample(text, 'policy_cache_cache_hits_total') ?? 0) >= 1)
  t.equal(sample(text, 'policy_cache_tenants_cached'), 1, 't2, never written, is held apart')
  t.equal(sample(text, 'policy_cache_catch_ups_total', { kind: 'delta' }), 0)
  t.equal(sample(text, 'policy_cache_catch_ups_total', { kind: 'full' }), 0)
  t.equal(sample(text, 'policy_cache_catch_ups_total', { kind: 'carried' }), 0)
  await app.policyCache.refresh('t1')
  t.equal(sample(await scrape(app), 'policy_cache_catch_ups_total', { kind: 'full' }), 1)

  t.equal(sample(await scrape(other), 'policy_cache_checks_total', { result: 'allowed' }), 0, 'each instance has its own registry')
  t.notMatch(await globalRegistry.metrics(), /policy_cache_/, 'prom-client\'s global registry is untouched')
})

test('metrics: a host registry, path and prefix; the metrics leave the registry on close', async (t) => {
  const registry = new Registry()
  const options: PolicyCacheOptions & { prefix: string } = { syncIntervalMs: 0, prefix: '/policy', metrics: { registry, path: '/prom', prefix: 'acl_' } }
  const app = Fastify()
  await app.register(policyCache, options)
  await app.policyCache.check('t1', 'u', 'p')
  const text = await scrape(app, '/policy/prom')
  t.equal(sample(text, 'acl_checks_total', { result: 'denied' }), 1)
  t.match(await registry.metrics(), /acl_checks_total/, 'in the host\'s registry')
  t.equal((await app.inject('/metrics')).statusCode, 404)
  await app.close()
  t.notMatch(await registry.metrics(), /acl_/, 'removed on close')

  // The same registry serves a new instance (no duplicate-name error).
  const again = Fastify()
  t.teardown(() => again.close())
  await again.register(policyCache, options)
  t.equal(sample(await scrape(again, '/policy/prom'), 'acl_checks_total', { result: 'denied' }), 0)

  // A second instance on the same registry needs its own prefix; the first's metrics stay.
  const clash = Fastify()
  const err = await clash.register(policyCache, options).ready().then(() => null, (e: Error) => e)
  await clash.close()
  t.match(err, { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /^Invalid option "metrics\.prefix": the registry already has a metric named acl_/ })
  t.match(await registry.metrics(), /acl_checks_total/, 'the first instance\'s metrics are intact')
  const other = Fastify()
  t.teardown(() => other.close())
  await other.register(policyCache, { syncIntervalMs: 0, routes: false, metrics: { registry, prefix: 'acl2_' } })
  t.match(await registry.metrics(), /acl2_checks_total/, 'another prefix shares the registry')

  // Metrics without the other routes.
  const bare = await buildApp(t, { routes: false, metrics: true })
  t.equal((await bare.inject('/metrics')).statusCode, 200)
  t.equal((await bare.inject('/health')).statusCode, 404)
})

test('metrics: bad options name the option', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['metrics', 'yes'],
    ['metrics.prefix', { prefix: 'bad-prefix' }],
    ['metrics.path', { path: 'metrics' }],
    ['metrics.registry', { registry: {} }]
  ]
  for (const [name, metrics] of cases) {
    const app = Fastify()
    const err = await app.register(policyCache, { metrics } as PolicyCacheOptions).ready().then(() => null, (e: Error) => e)
    t.match(err, { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: new RegExp(`"${name.replace('.', '\\.')}"`) }, name)
    await app.close()
  }
})

test('metrics: deliveries, failures, retries and give-ups per peer, propagation, revision lag', async (t) => {
  const file = join(tempDir(t), 'metrics.db')
  const [b] = await startCluster(t, 1, { file, name: 'b' })
  const proxy = await startProxy(t, Number(new URL(b.url).port))
  const dead = `http://127.0.0.1:${await freePort()}`
  const a = Fastify()
  t.teardown(() => a.close())
  await a.register(policyCache, {
    sqliteFile: file,
    serverId: 'a',
    peers: [proxy.url, dead],
    webhookSecret: SECRET,
    syncIntervalMs: 0,
    retry: { retries: 2, minDelayMs: 1, maxDelayMs: 2 },
    // Long enough for any load: both peers answer (or refuse) well before it, so the waits are exact.
    ackTimeoutMs: 30000,
    metrics: true
  })
  const deadGivenUp = async (count: number): Promise<string> => {
    for (let i = 0; i < 3000; i++) {
      const text = await scrape(a)
      if (sample(text, 'policy_cache_webhook_given_up_total', { peer: dead }) === count) return text
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    throw new Error('the dead peer\'s notice was never given up')
  }

  // Both instances cache the tenant, so the receiver reports its revision.
  await a.policyCache.check('t', 'alice', 'documents:read')
  await b.app.policyCache.check('t', 'alice', 'documents:read')
  const first = await a.policyCache.createGroup('t', 'g')
  t.same(first.peers, { acked: 1, total: 2 })
  t.match(b.app.policyCache.stats(), { carriedCatchUps: 1, deltaCatchUps: 0 }, 'the peer applied the change the signed notice carried')
  let text = await deadGivenUp(1)

  const proxied = { peer: proxy.url }
  t.equal(sample(text, 'policy_cache_webhook_deliveries_total', proxied), 1)
  t.equal(sample(text, 'policy_cache_propagation_seconds_count', proxied), 1)
  t.equal(sample(text, 'policy_cache_propagation_seconds_bucket', { le: '+Inf', peer: proxy.url }), 1)
  t.equal(sample(text, 'policy_cache_peer_revision_lag', { peer: proxy.url, tenant: 't' }), 0)
  t.equal(sample(text, 'policy_cache_peer_up', proxied), 1)
  t.equal(sample(text, 'policy_cache_webhook_failures_total', { peer: dead }), 3, 'the first attempt and two retries')
  t.equal(sample(text, 'policy_cache_webhook_retries_total', { peer: dead }), 2)
  t.equal(sample(text, 'policy_cache_peer_up', { peer: dead }), 0)
  t.equal(sample(text, 'policy_cache_peer_revision_lag', { peer: dead, tenant: 't' }), undefined, 'nothing known of a peer that never answered')
  t.equal(sample(text, 'policy_cache_webhook_deliveries_total', { peer: dead }), undefined)

  // The proxied peer cut off: its last acknowledged revision falls behind.
  proxy.setUp(false)
  const second = await a.policyCache.createGroup('t', 'g2')
  t.same(second.peers, { acked: 0, total: 2 })
  text = await deadGivenUp(2)
  t.equal(sample(text, 'policy_cache_peer_revision_lag', { peer: proxy.url, tenant: 't' }), 1)
  t.equal(sample(text, 'policy_cache_webhook_deliveries_total', proxied), 1)
  t.ok((sample(text, 'policy_cache_webhook_failures_total', proxied) ?? 0) >= 1)
})

test('metrics: a peer that answered 410 Gone counts as not up', async (t) => {
  const gone = Fastify()
  t.teardown(() => gone.close())
  gone.post('/webhook/refresh', async (_request, reply) => await reply.code(410).send())
  const goneUrl = await gone.listen({ port: 0, host: '127.0.0.1' })
  const a = Fastify()
  t.teardown(() => a.close())
  await a.register(policyCache, {
    sqliteFile: join(tempDir(t), 'gone.db'),
    serverId: 'a',
    peers: [goneUrl],
    webhookSecret: SECRET,
    syncIntervalMs: 0,
    ackTimeoutMs: 30000,
    metrics: true
  })
  await a.policyCache.createGroup('t', 'g')
  t.equal(a.policyCache.peers()[0]?.state, 'gone')
  t.equal(sample(await scrape(a), 'policy_cache_peer_up', { peer: goneUrl }), 0)
})

test('metrics: watch streams open, dropped for a slow client, and the events waiting', async (t) => {
  const app = await buildApp(t, { metrics: true, watch: { maxBuffered: 2 } })
  const slow = await app.policyCache.watch('t1')
  await app.policyCache.watch('t2')
  await app.policyCache.createGroup('t1', 'g1')
  await app.policyCache.createGroup('t1', 'g2')
  while (slow.buffered < 2) await new Promise((resolve) => setImmediate(resolve))
  let text = await scrape(app)
  t.equal(sample(text, 'policy_cache_watchers'), 2)
  t.equal(sample(text, 'policy_cache_watch_buffered_events'), 2)
  t.equal(sample(text, 'policy_cache_watchers_dropped_total'), 0)
  await app.policyCache.createGroup('t1', 'g3')
  await slow.ended
  text = await scrape(app)
  t.equal(sample(text, 'policy_cache_watchers'), 1)
  t.equal(sample(text, 'policy_cache_watch_buffered_events'), 0, 'a dropped stream holds its final event only, no longer counted')
  t.equal(sample(text, 'policy_cache_watchers_dropped_total'), 1)
})
