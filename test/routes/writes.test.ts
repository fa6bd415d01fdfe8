import { test } from 'tap'
import { buildApp, get, post } from '../helpers/app.js'

test('the six writes: effects, revisions, changed:false, the policy-revision header', async (t) => {
  const app = await buildApp(t)
  const created = await post(app, '/create-group', { tenant: 't1', group: 'editors' })
  t.equal(created.status, 200)
  t.same(created.body, { tenant: 't1', revision: 1, changed: true, peers: { acked: 0, total: 0 } })
  t.equal(created.headers['policy-revision'], '1')

  t.match((await post(app, '/create-group', { tenant: 't1', group: 'editors' })).body, { revision: 1, changed: false }, 'already present')
  t.match((await post(app, '/add-permission', { tenant: 't1', group: 'editors', permission: 'documents:*' })).body, { revision: 2, changed: true })
  t.match((await post(app, '/add-permission', { tenant: 't1', group: 'editors', permission: 'documents:*' })).body, { revision: 2, changed: false })
  t.match((await post(app, '/assign-user', { tenant: 't1', group: 'editors', user: 'alice' })).body, { revision: 3, changed: true })
  t.match((await get(app, '/check-access?tenant=t1&user=alice&permission=documents:read')).body, { allowed: true, revision: 3 })

  t.match((await post(app, '/remove-permission', { tenant: 't1', group: 'editors', permission: 'documents:*' })).body, { revision: 4, changed: true })
  t.match((await get(app, '/check-access?tenant=t1&user=alice&permission=documents:read')).body, { allowed: false, revision: 4 }, 'revoked at once')
  t.match((await post(app, '/remove-permission', { tenant: 't1', group: 'editors', permission: 'documents:*' })).body, { revision: 4, changed: false }, 'already absent')
  t.match((await post(app, '/unassign-user', { tenant: 't1', group: 'editors', user: 'alice' })).body, { revision: 5, changed: true })
  t.match((await post(app, '/unassign-user', { tenant: 't1', group: 'editors', user: 'alice' })).body, { revision: 5, changed: false })
  t.match((await post(app, '/delete-group', { tenant: 't1', group: 'editors' })).body, { revision: 6, changed: true })
  t.match((await post(app, '/delete-group', { tenant: 't1', group: 'editors' })).body, { revision: 6, changed: false })
  t.same((await get(app, '/tenants/t1')).body, { tenant: 't1', revision: 6, groups: [] })
})

test('delete-group removes the grants and memberships it held', async (t) => {
  const app = await buildApp(t)
  await post(app, '/create-group', { tenant: 't1', group: 'g' })
  await post(app, '/add-permission', { tenant: 't1', group: 'g', permission: 'a:b' })
  await post(app, '/assign-user', { tenant: 't1', group: 'g', user: 'bob' })
  await post(app, '/delete-group', { tenant: 't1', group: 'g' })
  await post(app, '/create-group', { tenant: 't1', group: 'g' })
  t.same((await get(app, '/tenants/t1/users/bob')).body, { tenant: 't1', user: 'bob', revision: 5, groups: [], permissions: [], grants: [] })
  await app.policyCache.refresh('t1')
  t.same((await get(app, '/tenants/t1')).body.groups, [{ name: 'g', permissions: [], users: [], includes: [] }], 'the database agrees after a reload')
})

test('add-permission and assign-user on a missing group → 404 with a code, nothing written', async (t) => {
  const app = await buildApp(t)
  for (const [url, body] of [
    ['/add-permission', { tenant: 't1', group: 'ghost', permission: 'x' }],
    ['/assign-user', { tenant: 't1', group: 'ghost', user: 'alice' }]
  ] as const) {
    const res = await post(app, url, body)
    t.equal(res.status, 404)
    t.same(res.body, {
      statusCode: 404,
      code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND',
      error: 'Not Found',
      message: 'Group "ghost" does not exist in tenant "t1"'
    })
  }
  t.equal(await app.policyCache.revision('t1'), 0)
  await app.policyCache.refresh('t1')
  t.same((await get(app, '/tenants/t1')).body, { tenant: 't1', revision: 0, groups: [] })
})

test('tenants are isolated', async (t) => {
  const app = await buildApp(t)
  await post(app, '/create-group', { tenant: 'a', group: 'g' })
  await post(app, '/add-permission', { tenant: 'a', group: 'g', permission: '*' })
  await post(app, '/assign-user', { tenant: 'a', group: 'g', user: 'alice' })
  t.match((await get(app, '/check-access?tenant=a&user=alice&permission=x')).body, { allowed: true })
  t.match((await get(app, '/check-access?tenant=b&user=alice&permission=x')).body, { allowed: false, revision: 0 })
  t.same((await post(app, '/assign-user', { tenant: 'b', group: 'g', user: 'alice' })).status, 404)
})

test('the decorator offers the same operations without HTTP', async (t) => {
  const app = await buildApp(t)
  const pc = app.policyCache
  t.equal(pc.checkSync('t1', 'alice', 'doc:read'), undefined, 'not loaded yet')
  t.equal(await pc.check('t1', 'alice', 'doc:read'), false, 'a never-written tenant allows nothing')
  await pc.createGroup('t1', 'g')
  await pc.addPermission('t1', 'g', 'doc:*')
  const w = await pc.assignUser('t1', 'g', 'alice')
  t.same(w, { tenant: 't1', revision: 3, changed: true, peers: { acked: 0, total: 0 } })
  t.equal(pc.checkSync('t1', 'alice', 'doc:read'), true, 'the hot path answers once loaded')
  t.equal(pc.checkSync('t1', 'alice', 'doc'), false)
  t.throws(() => pc.checkSync('t1', 'alice', 'doc:*'), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  t.equal(await pc.check('t1', 'alice', 'doc:write', { minRevision: 3 }), true)
  t.same(await pc.user('t1', 'alice'), { tenant: 't1', user: 'alice', revision: 3, groups: ['g'], permissions: ['doc:*'], grants: [{ permission: 'doc:*', chain: ['g'] }] })
  t.same(await pc.tenant('t1'), { tenant: 't1', revision: 3, groups: [{ name: 'g', permissions: ['doc:*'], users: ['alice'], includes: [] }] })
  t.same(await pc.refresh('t1'), { tenant: 't1', revision: 3 })
  t.equal(await pc.revision('t1'), 3)
  t.same(pc.peers(), [])
  await pc.removePermission('t1', 'g', 'doc:*')
  await pc.unassignUser('t1', 'g', 'alice')
  t.match(await pc.deleteGroup('t1', 'g'), { revision: 6, changed: true })
  await t.rejects(pc.createGroup('t1', '../x'), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  await t.rejects(pc.addPermission('t1', 'g', 'a::b'), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  await t.rejects(pc.check('t1', 'alice', 'doc:*'), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
})
