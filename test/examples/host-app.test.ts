/** The example host app: its routes are guarded by config.policy and require(), identity from headers. */
import { test } from 'tap'
import { buildHostApp } from '../../examples/host-app.js'

test('the example host app answers by the caller\'s permissions', async (t) => {
  const app = await buildHostApp({ syncIntervalMs: 0 })
  t.teardown(() => app.close())
  app.log.level = 'silent'
  await app.policyCache.createGroup('acme', 'readers')
  await app.policyCache.addPermission('acme', 'readers', 'documents:read')
  await app.policyCache.assignUser('acme', 'readers', 'alice')
  await app.policyCache.createGroup('acme', 'editors')
  await app.policyCache.addPermission('acme', 'editors', 'documents:*')
  await app.policyCache.assignUser('acme', 'editors', 'erin')
  const as = (user: string, tenant = 'acme') => ({ 'x-tenant-id': tenant, 'x-user-id': user })

  t.equal((await app.inject('/')).statusCode, 200, 'the open route needs nobody')
  t.match((await app.inject('/documents')).json(), { statusCode: 401, code: 'FST_POLICY_CACHE_UNIDENTIFIED' })
  t.same((await app.inject({ url: '/documents', headers: as('alice') })).json(), [])

  const denied = await app.inject({ method: 'POST', url: '/documents', headers: as('alice'), payload: { title: 'Plan' } })
  t.match(denied.json(), { statusCode: 403, code: 'FST_POLICY_CACHE_FORBIDDEN' }, 'a reader cannot write')
  const created = await app.inject({ method: 'POST', url: '/documents', headers: as('erin'), payload: { title: 'Plan' } })
  t.equal(created.statusCode, 201)
  t.same((await app.inject({ url: '/documents', headers: as('alice') })).json(), [{ id: 1, title: 'Plan' }])

  t.equal((await app.inject({ method: 'DELETE', url: '/documents/1', headers: as('alice') })).statusCode, 403)
  t.equal((await app.inject({ url: '/documents', headers: as('alice', 'globex') })).statusCode, 403, 'tenants are isolated')
  t.equal((await app.inject({ method: 'DELETE', url: '/documents/1', headers: as('erin') })).statusCode, 204)
  t.same((await app.inject({ url: '/documents', headers: as('alice') })).json(), [])

  // A permission revoked is enforced on the next request.
  await app.policyCache.unassignUser('acme', 'readers', 'alice')
  t.equal((await app.inject({ url: '/documents', headers: as('alice') })).statusCode, 403)
})
