import { test } from 'tap'
import { buildApp, get, post } from '../helpers/app.js'
import { InstrumentedStore } from '../helpers/instrumented-store.js'

test('/health answers ok, then 503 while the database does not answer', async (t) => {
  const store = new InstrumentedStore()
  const app = await buildApp(t, { db: store, serverId: 'node-a' })
  const ok = await get(app, '/health')
  t.equal(ok.status, 200)
  t.match(ok.body, { status: 'ok', serverId: 'node-a', db: 'ok', tenantsCached: 0, peers: { total: 0, up: 0 } })
  t.type(ok.body.uptimeMs, 'number')

  store.failing = new Error('connection refused')
  const down = await get(app, '/health')
  t.equal(down.status, 503)
  t.match(down.body, { status: 'unavailable', db: 'unavailable', serverId: 'node-a' })

  store.failing = undefined
  t.equal((await get(app, '/health')).status, 200, 'recovers without a restart')
})

test('a failing database: writes → coded 503, checks answer from the cache', async (t) => {
  const store = new InstrumentedStore()
  const app = await buildApp(t, { db: store })
  await app.policyCache.createGroup('t1', 'g')
  await app.policyCache.addPermission('t1', 'g', 'doc:read')
  await app.policyCache.assignUser('t1', 'g', 'alice')
  t.equal(await app.policyCache.check('t1', 'alice', 'doc:read'), true, 'cached')
  store.failing = new Error('the database went away')
  const write = await post(app, '/assign-user', { tenant: 't1', group: 'g', user: 'bob' })
  t.equal(write.status, 503)
  t.equal(write.body.code, 'FST_POLICY_CACHE_STORE_UNAVAILABLE')
  t.match((await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read')).body, { allowed: true, revision: 3 }, 'stale-while-unavailable')
  const uncached = await get(app, '/check-access?tenant=t2&user=alice&permission=doc:read')
  t.equal(uncached.status, 503, 'an uncached tenant cannot be answered')
  t.equal(uncached.body.code, 'FST_POLICY_CACHE_STORE_UNAVAILABLE')
  store.failing = undefined
  t.equal((await post(app, '/assign-user', { tenant: 't1', group: 'g', user: 'bob' })).status, 200)
})

test('/servers lists this instance and its peers', async (t) => {
  const app = await buildApp(t, {
    serverId: 'node-a',
    publicUrl: 'http://127.0.0.1:4000',
    peers: ['http://127.0.0.1:1/', 'http://127.0.0.1:4000'],
    webhookSecret: 'a-strong-enough-secret-for-tests'
  })
  const res = await get(app, '/servers')
  t.equal(res.status, 200)
  t.same(res.body.self, { serverId: 'node-a', url: 'http://127.0.0.1:4000' })
  t.equal(res.body.peers.length, 1, 'this instance\'s own URL is dropped from its peers')
  t.match(res.body.peers[0], { url: 'http://127.0.0.1:1', state: 'unknown', delivered: 0, failed: 0, serverId: null })
  t.match(res.body.peers[0], { circuit: 'closed', nextAttemptAt: null, tenantsBehind: 0, lag: [] }, 'breaker and lag are shown')
})
