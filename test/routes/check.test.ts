import { test } from 'tap'
import { buildApp, get } from '../helpers/app.js'
import { MemoryPolicyStore } from '../../examples/custom-store.js'
import { InstrumentedStore } from '../helpers/instrumented-store.js'

test('minRevision: a cache behind catches up before answering; a DB behind → 412', async (t) => {
  const store = new MemoryPolicyStore()
  const app = await buildApp(t, { db: store })
  await app.policyCache.createGroup('t1', 'g')
  await app.policyCache.addPermission('t1', 'g', 'doc:read')
  t.match((await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read')).body, { allowed: false, revision: 2 })

  // Another instance writes: this cache has not heard of it.
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'elsewhere')
  t.match((await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read')).body, { allowed: false, revision: 2 }, 'stale without a token')
  const fresh = await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read&minRevision=3')
  t.same(fresh.body, { allowed: true, revision: 3 }, 'caught up for the token')
  t.equal(fresh.headers['policy-revision'], '3')

  const ahead = await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read&minRevision=9')
  t.equal(ahead.status, 412)
  t.equal(ahead.body.code, 'FST_POLICY_CACHE_REVISION_AHEAD')
  t.match((await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read&minRevision=0')).body, { allowed: true })
})

test('tenant and user views, refresh', async (t) => {
  const app = await buildApp(t)
  const pc = app.policyCache
  await pc.createGroup('t1', 'readers')
  await pc.createGroup('t1', 'admins')
  await pc.addPermission('t1', 'readers', 'doc:read')
  await pc.addPermission('t1', 'admins', '*')
  await pc.assignUser('t1', 'readers', 'bob')
  await pc.assignUser('t1', 'admins', 'bob')
  const view = await get(app, '/tenants/t1')
  t.same(view.body, {
    tenant: 't1',
    revision: 6,
    groups: [
      { name: 'admins', permissions: ['*'], users: ['bob'], includes: [] },
      { name: 'readers', permissions: ['doc:read'], users: ['bob'], includes: [] }
    ]
  })
  t.equal(view.headers['policy-revision'], '6')
  t.same((await get(app, '/tenants/t1/users/bob')).body, { tenant: 't1', user: 'bob', revision: 6, groups: ['admins', 'readers'], permissions: ['*', 'doc:read'], grants: [{ permission: '*', chain: ['admins'] }, { permission: 'doc:read', chain: ['readers'] }] })
  const refreshed = await app.inject({ method: 'POST', url: '/refresh-tenant', payload: { tenant: 't1' } })
  t.same(refreshed.json(), { tenant: 't1', revision: 6 })
  t.same((await get(app, '/tenants/t1')).body, view.body, 'a full reload gives the same tenant')
})

test('minRevision waits for the database at most catchUpTimeoutMs, then a coded 503; a failing database too', async (t) => {
  const store = new InstrumentedStore()
  const app = await buildApp(t, { db: store, catchUpTimeoutMs: 50 })
  await app.policyCache.createGroup('t1', 'g')
  t.match((await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read')).body, { revision: 1 })
  await store.write('t1', { op: 'add-permission', group: 'g', permission: 'doc:read' }, 'elsewhere')

  const release = store.hold('changesSince')
  const slow = await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read&minRevision=2')
  t.equal(slow.status, 503, 'bounded wait')
  t.equal(slow.body.code, 'FST_POLICY_CACHE_STORE_UNAVAILABLE')
  t.match(slow.body.message, /within 50 ms/)
  release()

  store.failing = new Error('connection refused')
  const failing = await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read&minRevision=3')
  t.equal(failing.status, 503)
  t.equal(failing.body.code, 'FST_POLICY_CACHE_STORE_UNAVAILABLE')
  t.match((await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read')).body, { allowed: false }, 'without a token the cache still answers')
  store.failing = undefined
  const decorator = await app.policyCache.decide('t1', 'alice', 'doc:read', { minRevision: 2 })
  t.ok(decorator.revision >= 2, 'the decorator catches up once the database answers')
})

test('maxTenants: least recently used tenants are evicted, visible in stats and /health', async (t) => {
  const app = await buildApp(t, { maxTenants: 2 })
  for (const tenant of ['a', 'b', 'c']) await app.policyCache.createGroup(tenant, 'g')
  for (const tenant of ['a', 'b', 'c']) await app.policyCache.check(tenant, 'u', 'p:q')
  t.match(app.policyCache.stats(), { tenants: 2, evictions: 1, loads: 3 })
  t.match((await get(app, '/health')).body, { tenantsCached: 2 })
})
