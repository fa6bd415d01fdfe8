/**
 * The example server: ADMIN_TOKEN guards the policy routes (reads and writes) and the policy board
 * (a browser gives the token as the password of HTTP Basic), /metrics is on by default, and the
 * OpenAPI document at /docs/json lists every route with its schemas.
 */
import { test } from 'tap'
import { parseConfig } from '../../examples/config.js'
import { buildServer } from '../../examples/server.js'
import { WRITE_BODY_FIELDS } from '../helpers/app.js'

const TOKEN = 'an-admin-token-long-enough'

test('ADMIN_TOKEN: every policy route needs the bearer token; ops, metrics, docs and the webhook stay open', async (t) => {
  const app = await buildServer(parseConfig(['0'], { POLICY_DB: ':memory:', ADMIN_TOKEN: TOKEN }), { logger: false })
  t.teardown(() => app.close())
  const bearer = { authorization: `Bearer ${TOKEN}` }
  const policy: Array<[string, string, object?]> = [
    ['POST', '/create-group', { tenant: 't1', group: 'g' }],
    ['POST', '/add-permission', { tenant: 't1', group: 'g', permission: 'documents:read' }],
    ['POST', '/batch', { tenant: 't1', changes: [{ operation: 'assign-user', group: 'g', user: 'alice' }] }],
    ['GET', '/check-access?tenant=t1&user=alice&permission=documents:read'],
    ['GET', '/tenants/t1'],
    ['GET', '/tenants/t1/users/alice'],
    ['GET', '/tenants/t1/groups?limit=10'],
    ['GET', '/tenants/t1/groups/g/users'],
    ['GET', '/tenants/t1/groups/g/permissions'],
    ['GET', '/tenants/t1/who?permission=documents:read'],
    ['POST', '/check-batch', { tenant: 't1', checks: [{ user: 'alice', permission: 'documents:read' }] }],
    ['GET', '/tenants/t1/changes?after=0&limit=10'],
    ['POST', '/refresh-tenant', { tenant: 't1' }],
    ['GET', '/policy-board/'],
    ['GET', '/policy-board/api/cluster?tenant=t1']
  ]
  for (const [method, url, payload] of policy) {
    const basic = (credentials: string): string => `Basic ${Buffer.from(credentials).toString('base64')}`
    for (const authorization of [undefined, 'Bearer wrong-token', `Bearer ${TOKEN}x`, TOKEN, `Basic ${TOKEN}`, 'Bearer ', basic(`admin:${TOKEN}x`), basic(TOKEN)]) {
      const res = await app.inject({ method: method as 'GET', url, payload, headers: authorization === undefined ? {} : { authorization } })
      t.equal(res.statusCode, 401, `${method} ${url} with ${authorization ?? 'no header'}`)
      t.equal(res.json().code, 'FST_POLICY_CACHE_UNIDENTIFIED')
      t.match(res.headers['www-authenticate'], ['Bearer realm="policy-cache"', 'Basic realm="policy-cache", charset="UTF-8"'], 'both challenges: a browser asks for Basic credentials')
    }
    t.equal((await app.inject({ method: method as 'GET', url, payload, headers: bearer })).statusCode, 200, `${method} ${url} with the token`)
  }
  t.equal(await app.policyCache.revision('t1'), 3, 'only the authorised writes happened')
  // A browser's HTTP Basic, the token as the password (any user name).
  const basic = { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }
  t.equal((await app.inject({ url: '/policy-board/', headers: basic })).statusCode, 200, 'the board with Basic credentials')
  t.equal((await app.inject({ url: '/tenants/t1', headers: basic })).statusCode, 200, 'a policy route with Basic credentials')
  for (const url of ['/health', '/metrics', '/docs/json']) {
    t.equal((await app.inject(url)).statusCode, 200, `${url} is open`)
  }
  t.equal((await app.inject('/servers')).statusCode, 401, '/servers (tenant ids, peer addresses) needs the token')
  t.equal((await app.inject({ url: '/servers', headers: bearer })).statusCode, 200, '/servers with the token')
  t.equal((await app.inject({ method: 'POST', url: '/webhook/refresh', payload: {} })).statusCode, 404, 'no secret, no webhook')

  const open = await buildServer(parseConfig(['0'], { POLICY_DB: ':memory:', METRICS: '0' }), { logger: false })
  t.teardown(() => open.close())
  t.equal((await open.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' } })).statusCode, 200, 'without ADMIN_TOKEN the routes are open')
  t.equal((await open.inject('/metrics')).statusCode, 404, 'METRICS=0 turns /metrics off')
})

test('OpenAPI: /docs/json lists every route with its request and response schemas', async (t) => {
  const app = await buildServer(parseConfig(['0'], { POLICY_DB: ':memory:', ADMIN_TOKEN: TOKEN, WEBHOOK_SECRET: 'a-webhook-secret-long-enough' }), { logger: false })
  t.teardown(() => app.close())
  const res = await app.inject('/docs/json')
  t.equal(res.statusCode, 200)
  const doc = res.json() as { openapi: string, paths: Record<string, Record<string, any>> }
  t.match(doc.openapi, /^3\./)

  for (const [path, fields] of Object.entries(WRITE_BODY_FIELDS)) {
    const op = doc.paths[path]?.post
    t.ok(op, `${path} is documented`)
    t.type(op?.description, 'string', `${path} has a description`)
    t.type(op?.summary, 'string', `${path} has a summary`)
    const body = op?.requestBody?.content?.['application/json']?.schema
    // Every write takes an optional ifRevision besides its fields.
    const optional = path === '/refresh-tenant' ? [] : ['ifRevision']
    t.same(Object.keys(body?.properties ?? {}).sort(), [...fields, ...optional].sort(), `${path} request body`)
    t.same(body?.required?.slice().sort(), [...fields].sort(), `${path} required fields`)
    t.equal(body?.properties?.tenant?.pattern, '^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$', `${path} tenant pattern`)
    t.ok(body?.examples ?? body?.example ?? op?.requestBody?.content?.['application/json']?.example, `${path} has an example`)
    t.ok(op?.responses?.['200']?.content?.['application/json']?.schema?.properties?.revision, `${path} 200 schema`)
    t.same(op?.security, [{ adminToken: [] }], `${path} needs the admin token`)
  }

  const batch = doc.paths['/batch']?.post
  t.type(batch?.description, 'string', '/batch has a description')
  const batchBody = batch?.requestBody?.content?.['application/json']?.schema
  t.same(Object.keys(batchBody?.properties ?? {}).sort(), ['changes', 'ifRevision', 'tenant'])
  t.same(Object.keys(batchBody?.properties?.changes?.items?.properties ?? {}).sort(), ['group', 'includes', 'operation', 'permission', 'user'])
  t.ok(batch?.responses?.['200']?.content?.['application/json']?.schema?.properties?.effects, '/batch 200 schema')
  t.same(batch?.security, [{ adminToken: [] }], '/batch needs the admin token')

  const check = doc.paths['/check-access']?.get
  t.same(check?.parameters?.filter((p: any) => p.in === 'query').map((p: any) => p.name).sort(), ['minRevision', 'permission', 'tenant', 'user'])
  t.same(Object.keys(check?.responses?.['200']?.content?.['application/json']?.schema?.properties ?? {}).sort(), ['allowed', 'revision'])
  const tenant = doc.paths['/tenants/{tenant}']?.get
  t.same(tenant?.parameters?.map((p: any) => [p.in, p.name]), [['path', 'tenant']])
  t.ok(tenant?.responses?.['200']?.content?.['application/json']?.schema?.properties?.groups)
  const user = doc.paths['/tenants/{tenant}/users/{user}']?.get
  t.same(user?.parameters?.map((p: any) => [p.in, p.name]).sort(), [['path', 'tenant'], ['path', 'user']])
  t.ok(user?.responses?.['200']?.content?.['application/json']?.schema?.properties?.permissions)
  t.ok(user?.responses?.['200']?.content?.['application/json']?.schema?.properties?.grants?.items?.properties?.chain, 'the user view says why (chains)')
  t.ok(doc.paths['/tenants/{tenant}/who']?.get?.responses?.['200']?.content?.['application/json']?.schema?.properties?.users?.items?.properties?.chains, 'who says why (chains)')
  const changes = doc.paths['/tenants/{tenant}/changes']?.get
  t.type(changes?.description, 'string', 'the audit feed has a description')
  t.same(changes?.parameters?.map((p: any) => [p.in, p.name]).sort(), [['path', 'tenant'], ['query', 'after'], ['query', 'limit']])
  t.same(Object.keys(changes?.responses?.['200']?.content?.['application/json']?.schema?.properties ?? {}).sort(), ['entries', 'oldestRevision', 'revision', 'tenant'])
  t.same(changes?.security, [{ adminToken: [] }], 'the audit feed needs the admin token')

  const watch = doc.paths['/tenants/{tenant}/watch']?.get
  t.type(watch?.description, 'string', 'the watch stream has a description')
  t.same(watch?.parameters?.map((p: any) => [p.in, p.name]).sort(), [['header', 'last-event-id'], ['path', 'tenant'], ['query', 'after']])
  t.ok(watch?.responses?.['200']?.content?.['text/event-stream'], 'the watch stream is text/event-stream')
  t.same(watch?.security, [{ adminToken: [] }], 'the watch stream needs the admin token')

  // The listings and the reverse lookup: described, their query parameters named, behind the admin token.
  for (const [path, params, query, field] of [
    ['/tenants/{tenant}/groups', ['tenant'], ['cursor', 'limit', 'minRevision'], 'groups'],
    ['/tenants/{tenant}/groups/{group}/users', ['group', 'tenant'], ['cursor', 'limit', 'minRevision'], 'users'],
    ['/tenants/{tenant}/groups/{group}/permissions', ['group', 'tenant'], ['cursor', 'limit', 'minRevision'], 'permissions'],
    ['/tenants/{tenant}/who', ['tenant'], ['cursor', 'limit', 'minRevision', 'permission'], 'users']
  ] as const) {
    const op = doc.paths[path]?.get
    t.type(op?.description, 'string', `${path} has a description`)
    t.same(op?.parameters?.filter((p: any) => p.in === 'path').map((p: any) => p.name).sort(), params, `${path} path parameters`)
    t.same(op?.parameters?.filter((p: any) => p.in === 'query').map((p: any) => p.name).sort(), query, `${path} query parameters`)
    const reply = op?.responses?.['200']?.content?.['application/json']?.schema?.properties
    t.ok(reply?.[field] && reply?.next && reply?.revision, `${path} 200 schema`)
    t.same(op?.security, [{ adminToken: [] }], `${path} needs the admin token`)
  }
  const checkBatch = doc.paths['/check-batch']?.post
  t.type(checkBatch?.description, 'string', '/check-batch has a description')
  t.same(Object.keys(checkBatch?.requestBody?.content?.['application/json']?.schema?.properties ?? {}).sort(), ['checks', 'minRevision', 'tenant'])
  t.ok(checkBatch?.responses?.['200']?.content?.['application/json']?.schema?.properties?.results, '/check-batch 200 schema')
  t.same(checkBatch?.security, [{ adminToken: [] }], '/check-batch needs the admin token')

  // The tenant lifecycle: described, parameters named, schemas of their bodies and replies, behind the admin token.
  for (const [method, path, params, query, field] of [
    ['get', '/tenants', [], ['cursor', 'limit'], 'tenants'],
    ['delete', '/tenants/{tenant}', ['tenant'], ['ifRevision'], 'deleted'],
    ['get', '/tenants/{tenant}/export', ['tenant'], [], 'groups'],
    ['put', '/tenants/{tenant}/import', ['tenant'], [], 'changed']
  ] as const) {
    const op = doc.paths[path]?.[method]
    t.type(op?.description, 'string', `${method} ${path} has a description`)
    t.type(op?.summary, 'string', `${method} ${path} has a summary`)
    t.same(op?.parameters?.filter((p: any) => p.in === 'path').map((p: any) => p.name) ?? [], params, `${method} ${path} path parameters`)
    t.same(op?.parameters?.filter((p: any) => p.in === 'query').map((p: any) => p.name).sort() ?? [], query, `${method} ${path} query parameters`)
    t.ok(op?.responses?.['200']?.content?.['application/json']?.schema?.properties?.[field], `${method} ${path} 200 schema`)
    t.same(op?.security, [{ adminToken: [] }], `${method} ${path} needs the admin token`)
  }
  const importBody = doc.paths['/tenants/{tenant}/import']?.put?.requestBody?.content?.['application/json']?.schema
  t.same(Object.keys(importBody?.properties ?? {}).sort(), ['format', 'groups', 'ifRevision', 'revision', 'tenant'], 'the import takes the export document')
  t.same(Object.keys(importBody?.properties?.groups?.items?.properties ?? {}).sort(), ['includes', 'name', 'permissions', 'users'])

  for (const path of ['/health', '/metrics']) {
    t.ok(doc.paths[path]?.get, `${path} is documented`)
    t.equal(doc.paths[path]?.get?.security, undefined, `${path} is open`)
  }
  t.same(doc.paths['/servers']?.get?.security, [{ adminToken: [] }], '/servers needs the admin token')
  const webhook = doc.paths['/webhook/refresh']?.post
  t.ok(webhook?.requestBody?.content?.['application/json']?.schema?.properties?.changes, 'the webhook body')
  t.equal((await app.inject('/docs/')).statusCode, 200, 'the UI is served')
})
