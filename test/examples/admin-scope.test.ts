/** examples/admin-scope.ts: an administrator scoped to their tenants, through the plugin's routeHooks. */
import type { FastifyRequest } from 'fastify'
import { test } from 'tap'
import { tenantScope } from '../../examples/admin-scope.js'
import { buildApp } from '../helpers/app.js'

/** Stands for a verified token's claims (what @fastify/jwt puts on request.user). */
const ADMINS: Record<string, string[]> = { 'token-acme': ['acme'], 'token-root': ['*'] }

test('an admin reaches only the tenants they administer, on every policy route', async (t) => {
  const tenantsOf = (request: FastifyRequest) => ADMINS[String(request.headers.authorization).replace(/^Bearer /, '')]
  const app = await buildApp(t, { routeHooks: { preHandler: tenantScope(tenantsOf) } })
  const as = (token: string | undefined) => token === undefined ? {} : { authorization: `Bearer ${token}` }

  const requests: Array<[string, (tenant: string) => string, ((tenant: string) => object)?]> = [
    ['POST', () => '/create-group', (tenant) => ({ tenant, group: 'g' })],
    ['POST', () => '/assign-user', (tenant) => ({ tenant, group: 'g', user: 'alice' })],
    ['GET', (tenant) => `/check-access?tenant=${tenant}&user=alice&permission=documents:read`],
    ['GET', (tenant) => `/tenants/${tenant}`],
    ['GET', (tenant) => `/tenants/${tenant}/users/alice`],
    ['GET', (tenant) => `/tenants/${tenant}/changes?after=0`],
    ['POST', () => '/refresh-tenant', (tenant) => ({ tenant })],
    ['GET', (tenant) => `/tenants/${tenant}/export`],
    // The document's tenant, when present, is the one imported into: the scope reads it from the body.
    ['PUT', (tenant) => `/tenants/${tenant}/import`, (tenant) => ({ tenant, groups: [{ name: 'g', permissions: [], users: ['alice'] }], format: 1 })]
  ]
  for (const [method, url, body] of requests) {
    const send = (tenant: string, token: string | undefined) =>
      app.inject({ method: method as 'GET', url: url(tenant), payload: body?.(tenant), headers: as(token) })
    t.equal((await send('acme', 'token-acme')).statusCode, 200, `${method} ${url('acme')}: own tenant`)
    const other = await send('globex', 'token-acme')
    t.equal(other.statusCode, 403, `${method} ${url('globex')}: another tenant`)
    t.equal(other.json().code, 'FST_POLICY_CACHE_FORBIDDEN')
    t.equal((await send('globex', 'token-root')).statusCode, 200, `${method} ${url('globex')}: an admin of all tenants`)
    t.equal((await send('acme', undefined)).json().code, 'FST_POLICY_CACHE_UNIDENTIFIED', `${method}: no caller`)
  }
  t.equal(await app.policyCache.revision('acme'), 2)
  t.equal(await app.policyCache.revision('globex'), 2, 'only the root admin wrote to globex')

  // A document naming the admin's own tenant cannot be imported into another one.
  const smuggled = await app.inject({ method: 'PUT', url: '/tenants/globex/import', payload: { tenant: 'acme', groups: [], format: 1 }, headers: as('token-acme') })
  t.equal(smuggled.statusCode, 400)
  // Listing every tenant, and deleting one, name no tenant in the body or query: only an admin of all tenants passes.
  t.equal((await app.inject({ method: 'GET', url: '/tenants', headers: as('token-acme') })).statusCode, 403)
  t.same((await app.inject({ method: 'GET', url: '/tenants', headers: as('token-root') })).json().tenants.map((row: { tenant: string }) => row.tenant), ['acme', 'globex'])
  t.equal((await app.inject({ method: 'DELETE', url: '/tenants/globex', headers: as('token-acme') })).statusCode, 403)
  t.equal((await app.inject({ method: 'DELETE', url: '/tenants/acme', headers: as('token-acme') })).statusCode, 200, 'the params name it')
  t.equal(await app.policyCache.revision('globex'), 2, 'nothing written to globex')
})
