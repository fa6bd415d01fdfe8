/**
 * Ids are up to 128 characters, but Fastify's router answers 414 for a path parameter longer than
 * the host's `maxParamLength` (default 100). The views fall back to a wildcard route without that
 * limit, so every route works with 128-character ids whatever the host's `maxParamLength`.
 */
import Fastify from 'fastify'
import { test } from 'tap'
import policyCache from '../../lib/plugin.js'
import { buildApp, get } from '../helpers/app.js'

const id = (c: string, length = 128) => c + 'x'.repeat(length - 1)

test('a 128-character tenant, group and user: written, checked and viewed', async (t) => {
  const app = await buildApp(t)
  const [tenant, group, user] = [id('t'), id('g'), id('u')]
  for (const [url, payload] of [
    ['/create-group', { tenant, group }],
    ['/add-permission', { tenant, group, permission: 'doc:read' }],
    ['/assign-user', { tenant, group, user }]
  ] as const) {
    t.equal((await app.inject({ method: 'POST', url, payload })).statusCode, 200, url)
  }
  t.same((await get(app, `/check-access?tenant=${tenant}&user=${user}&permission=doc:read`)).body, { allowed: true, revision: 3 })
  const view = await get(app, `/tenants/${tenant}`)
  t.equal(view.status, 200)
  t.same(view.body, { tenant, revision: 3, groups: [{ name: group, permissions: ['doc:read'], users: [user], includes: [] }] })
  t.equal(view.headers['policy-revision'], '3')
  const userView = await get(app, `/tenants/${tenant}/users/${user}`)
  t.equal(userView.status, 200)
  t.same(userView.body, { tenant, user, revision: 3, groups: [group], permissions: ['doc:read'], grants: [{ permission: 'doc:read', chain: [group] }] })
  t.same((await get(app, `/tenants/t1/users/${user}`)).body, { tenant: 't1', user, revision: 0, groups: [], permissions: [], grants: [] }, 'a long user in a short tenant')
})

test('with a host maxParamLength of 20, ids past it still work', async (t) => {
  const app = Fastify({ maxParamLength: 20 })
  t.teardown(() => app.close())
  await app.register(policyCache, { syncIntervalMs: 0 })
  const tenant = id('t', 40)
  await app.policyCache.createGroup(tenant, 'g')
  const res = await app.inject(`/tenants/${tenant}`)
  t.equal(res.statusCode, 200)
  t.match(res.json(), { tenant, revision: 1 })
})

test('the fallback: malformed ids are a coded 400, other paths a 404', async (t) => {
  const app = await buildApp(t)
  for (const url of [`/tenants/${id('t', 129)}`, `/tenants/${id('t')}/users/${id('-')}`, `/tenants/${'.'.repeat(120)}`]) {
    const res = await get(app, url)
    t.equal(res.status, 400, url)
    t.match(res.body, { code: /^FST_/ })
  }
  for (const url of [`/tenants/${id('t')}/group`, `/tenants/${id('t')}/users/u/x`, `/tenants/${id('t')}/members/u`]) {
    t.equal((await get(app, url)).status, 404, url)
  }
  t.match(await get(app, `/tenants/${'a'.repeat(300)}`), { status: 400, body: { code: 'FST_POLICY_CACHE_INVALID_INPUT' } }, 'longer than an id')
})

test('the fallback is behind routeHooks like the views', async (t) => {
  const app = await buildApp(t, { routeHooks: { onRequest: async (_request, reply) => { await reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'no' }) } } })
  t.equal((await get(app, `/tenants/${id('t')}`)).status, 401)
})
