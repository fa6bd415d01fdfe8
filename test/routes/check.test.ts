import { test } from 'tap'
import { buildApp, get } from '../helpers/app.js'
import { MemoryPolicyStore } from '../../examples/custom-store.js'

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
      { name: 'admins', permissions: ['*'], users: ['bob'] },
      { name: 'readers', permissions: ['doc:read'], users: ['bob'] }
    ]
  })
  t.equal(view.headers['policy-revision'], '6')
  t.same((await get(app, '/tenants/t1/users/bob')).body, { tenant: 't1', user: 'bob', revision: 6, groups: ['admins', 'readers'], permissions: ['*', 'doc:read'] })
  const refreshed = await app.inject({ method: 'POST', url: '/refresh-tenant', payload: { tenant: 't1' } })
  t.same(refreshed.json(), { tenant: 't1', revision: 6 })
  t.same((await get(app, '/tenants/t1')).body, view.body, 'a full reload gives the same tenant')
})
