/**
 * The tenant lifecycle through the routes and the decorator: GET /tenants (paginated), DELETE
 * /tenants/:tenant, GET /tenants/:tenant/export and PUT /tenants/:tenant/import — replies, coded
 * errors, nothing written by a refused request, the size limits, long ids, the admin protection, and
 * the export → import round trip (a seeded property).
 */
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { test } from 'tap'
import type { GroupData } from '../../lib/model.js'
import { buildApp, get, post } from '../helpers/app.js'
import { InstrumentedStore } from '../helpers/instrumented-store.js'

const POLICY: GroupData[] = [
  { name: 'admins', permissions: ['*'], users: ['carol'], includes: ['editors'] },
  { name: 'editors', permissions: ['docs:*'], users: ['alice', 'bob'], includes: [] }
]

async function request (app: FastifyInstance, method: 'DELETE' | 'PUT' | 'GET', url: string, payload?: unknown) {
  const res = await app.inject({ method, url, ...(payload === undefined ? {} : { payload: payload as object }) })
  return { status: res.statusCode, body: res.json(), headers: res.headers }
}

test('GET /tenants and tenants(): the tenants that exist, sorted, a page at a time', async (t) => {
  const app = await buildApp(t)
  t.same((await get(app, '/tenants')).body, { tenants: [], next: null })
  for (const tenant of ['beta', 'alpha', 'gamma']) await app.policyCache.createGroup(tenant, 'g')
  await app.policyCache.createGroup('beta', 'h')
  const first = await get(app, '/tenants?limit=2')
  t.same(first.body, { tenants: [{ tenant: 'alpha', revision: 1 }, { tenant: 'beta', revision: 2 }], next: first.body.next })
  t.type(first.body.next, 'string')
  t.same((await get(app, `/tenants?limit=2&cursor=${first.body.next}`)).body, { tenants: [{ tenant: 'gamma', revision: 1 }], next: null }, 'the last page')
  t.same((await get(app, '/tenants?limit=3')).body.next, null, 'a page that ends exactly at the last: no next')
  t.same(await app.policyCache.tenants({ limit: 1, cursor: first.body.next }), { tenants: [{ tenant: 'gamma', revision: 1 }], next: null }, 'the decorator')

  for (const url of ['/tenants?limit=0', '/tenants?limit=1001', '/tenants?cursor=%2B%2B', '/tenants?minRevision=1', '/tenants?other=1']) {
    const res = await get(app, url)
    t.equal(res.status, 400, url)
    t.match(res.body.code, /^FST_/)
  }
  await t.rejects(app.policyCache.tenants({ cursor: 'not a cursor' }), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /cursor/ })
  await t.rejects(app.policyCache.tenants({ limit: 0 }), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /limit/ })
})

test('DELETE /tenants/:tenant: its policy goes, checks deny at once, the revision is kept', async (t) => {
  const app = await buildApp(t)
  const missing = await request(app, 'DELETE', '/tenants/t1')
  t.same(missing, { status: 404, headers: missing.headers, body: { statusCode: 404, code: 'FST_POLICY_CACHE_TENANT_NOT_FOUND', error: 'Not Found', message: 'Tenant "t1" does not exist (never written, or deleted)' } })

  await app.policyCache.importTenant('t1', { groups: POLICY, format: 1 })
  await app.policyCache.createGroup('t2', 'g')
  t.equal(await app.policyCache.check('t1', 'alice', 'docs:read'), true)
  const conflict = await request(app, 'DELETE', '/tenants/t1?ifRevision=0')
  t.match(conflict, { status: 409, body: { code: 'FST_POLICY_CACHE_REVISION_CONFLICT' }, headers: { 'policy-revision': '1' } })
  t.equal(await app.policyCache.check('t1', 'alice', 'docs:read'), true, 'a refused deletion deletes nothing')

  const deleted = await request(app, 'DELETE', '/tenants/t1?ifRevision=1')
  t.same(deleted.body, { tenant: 't1', deleted: true, revision: 2, peers: { acked: 0, total: 0 } })
  t.equal(deleted.headers['policy-revision'], '2')
  t.equal(await app.policyCache.check('t1', 'alice', 'docs:read'), false, 'this instance answers from the deletion at once')
  t.same((await get(app, '/tenants/t1')).body, { tenant: 't1', revision: 2, groups: [] })
  t.same((await get(app, '/tenants')).body, { tenants: [{ tenant: 't2', revision: 1 }], next: null })
  t.equal((await request(app, 'DELETE', '/tenants/t1')).status, 404, 'deleted already')
  await t.rejects(app.policyCache.deleteTenant('t1'), { code: 'FST_POLICY_CACHE_TENANT_NOT_FOUND' }, 'the decorator')

  t.match(await app.policyCache.createGroup('t1', 'g'), { revision: 3, changed: true }, 'created again, the revision goes on')
  t.same(await app.policyCache.deleteTenant('t1', { actor: 'ops' }), { tenant: 't1', deleted: true, revision: 4, peers: { acked: 0, total: 0 } })
  t.match((await app.policyCache.changes('t1', { after: 3 })).entries, [{ revision: 4, actor: 'ops', change: { op: 'delete-group', group: 'g' } }])

  for (const url of ['/tenants/t2?ifRevision=x', '/tenants/t2?other=1', '/tenants/-bad']) t.equal((await request(app, 'DELETE', url)).status, 400, url)
  await t.rejects(app.policyCache.deleteTenant('t2', { ifRevision: -1 }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  await t.rejects(app.policyCache.deleteTenant('t2', { actor: '' }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  t.equal(await app.policyCache.revision('t2'), 1, 'refused requests wrote nothing')
})

test('GET /tenants/:tenant/export: one document at one revision, read from the database', async (t) => {
  const app = await buildApp(t)
  t.match(await get(app, '/tenants/t1/export'), { status: 404, body: { code: 'FST_POLICY_CACHE_TENANT_NOT_FOUND' } })
  await app.policyCache.batch('t1', [
    { op: 'create-group', group: 'editors' },
    { op: 'assign-user', group: 'editors', user: 'bob' },
    { op: 'assign-user', group: 'editors', user: 'alice' },
    { op: 'add-permission', group: 'editors', permission: 'docs:*' },
    { op: 'create-group', group: 'admins' },
    { op: 'add-permission', group: 'admins', permission: '*' },
    { op: 'assign-user', group: 'admins', user: 'carol' },
    { op: 'include-group', group: 'admins', includes: 'editors' }
  ])
  const res = await get(app, '/tenants/t1/export')
  t.same(res.body, { tenant: 't1', revision: 1, groups: POLICY, format: 1 }, 'sorted')
  t.equal(res.headers['policy-revision'], '1')
  t.same(await app.policyCache.exportTenant('t1'), res.body, 'the decorator')
  await app.policyCache.deleteTenant('t1')
  await t.rejects(app.policyCache.exportTenant('t1'), { code: 'FST_POLICY_CACHE_TENANT_NOT_FOUND' }, 'a deleted tenant')
  t.equal((await get(app, '/tenants/-x/export')).status, 400)
})

test('PUT /tenants/:tenant/import: the tenant holds exactly the document, at one revision', async (t) => {
  const app = await buildApp(t)
  const elsewhere = await request(app, 'PUT', '/tenants/t1/import', { tenant: 'elsewhere', groups: POLICY, format: 1 })
  t.match(elsewhere, { status: 400, body: { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /of tenant "elsewhere", not "t1"/ } }, 'a document of another tenant')
  await t.rejects(app.policyCache.importTenant('t1', { tenant: 'elsewhere', groups: POLICY, format: 1 }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  t.equal(await app.policyCache.revision('t1'), 0, 'nothing written')
  const res = await request(app, 'PUT', '/tenants/t1/import', { tenant: 't1', revision: 40, groups: POLICY, format: 1, ifRevision: 0 })
  t.same(res.body, { tenant: 't1', revision: 1, changed: true, peers: { acked: 0, total: 0 } }, 'a tenant that does not exist is created')
  t.equal(res.headers['policy-revision'], '1')
  t.same((await get(app, '/tenants/t1')).body, { tenant: 't1', revision: 1, groups: POLICY })
  t.same((await request(app, 'PUT', '/tenants/t1/import', { groups: POLICY, format: 1 })).body, { tenant: 't1', revision: 1, changed: false, peers: { acked: 0, total: 0 } }, 'the same: nothing')

  const conflict = await request(app, 'PUT', '/tenants/t1/import', { groups: [], format: 1, ifRevision: 0 })
  t.match(conflict, { status: 409, headers: { 'policy-revision': '1' } })
  // A document without `includes` (they are optional): none.
  const next = [{ name: 'editors', permissions: ['docs:read'], users: ['dave'] }]
  t.match(await app.policyCache.importTenant('t1', { groups: next, format: 1 }, { ifRevision: 1, actor: 'ci' }), { revision: 2, changed: true })
  t.same((await get(app, '/tenants/t1')).body, { tenant: 't1', revision: 2, groups: [{ ...next[0], includes: [] }] })
  t.equal(await app.policyCache.check('t1', 'carol', 'anything'), false, 'the old grants are gone here at once')
  t.match((await app.policyCache.changes('t1', { after: 1 })).entries, [{ revision: 2, actor: 'ci', change: { op: 'batch' } }])

  // An inclusion turned round: the old one goes before the new one comes, so no cycle on the way.
  await app.policyCache.importTenant('t1', { groups: POLICY, format: 1 })
  const reversed = [{ ...POLICY[0], includes: [] }, { ...POLICY[1], includes: ['admins'] }]
  t.match(await app.policyCache.importTenant('t1', { groups: reversed, format: 1 }), { revision: 4, changed: true })
  t.same((await app.policyCache.exportTenant('t1')).groups, reversed)
  t.equal(await app.policyCache.check('t1', 'alice', 'anything'), true, 'editors now hold what admins grant')
})

test('a malformed document is a coded 400 naming the place, nothing written', async (t) => {
  const app = await buildApp(t)
  await app.policyCache.importTenant('t1', { groups: POLICY, format: 1 })
  const group = (fields: object) => ({ name: 'g', permissions: [], users: [], ...fields })
  const bodies: unknown[] = [
    {},
    { groups: [] },
    { groups: [], format: 2 },
    { groups: {}, format: 1 },
    { groups: [], format: 1, other: true },
    { groups: [group({ extra: 1 })], format: 1 },
    { groups: [group({ name: '-g' })], format: 1 },
    { groups: [group({ permissions: ['docs:*:x'] })], format: 1 },
    { groups: [group({ users: ['a b'] })], format: 1 },
    { groups: [group({})], format: 1, tenant: '-t' },
    { groups: [group({})], format: 1, revision: -1 },
    { groups: [group({})], format: 1, ifRevision: 1.5 }
  ]
  for (const body of bodies) {
    const res = await request(app, 'PUT', '/tenants/t1/import', body)
    t.equal(res.status, 400, JSON.stringify(body))
    t.match(res.body.code, /^FST_/)
  }
  // What the schema cannot say: each name, grant and member once.
  const duplicates: Array<[unknown, RegExp]> = [
    [[group({}), group({})], /groups\[1\]\.name: "g" is named twice/],
    [[group({ permissions: ['a', 'a'] })], /groups\[0\]\.permissions\[1\]: "a" is listed twice/],
    [[group({ users: ['u', 'v', 'u'] })], /groups\[0\]\.users\[2\]: "u" is listed twice/],
    [[group({ includes: ['h', 'h'] }), group({ name: 'h' })], /groups\[0\]\.includes\[1\]: "h" is listed twice/],
    [[group({ includes: ['h'] })], /groups\[0\]\.includes\[0\]: "h" is no group of the document/]
  ]
  for (const [groups, message] of duplicates) {
    t.match(await request(app, 'PUT', '/tenants/t1/import', { groups, format: 1 }), { status: 400, body: { code: 'FST_POLICY_CACHE_INVALID_INPUT', message } })
  }

  // The decorator checks what the schema checks on the route.
  const pc = app.policyCache
  const bad: Array<[unknown, RegExp]> = [
    [null, /document/],
    [[], /document/],
    [{ groups: [], format: 1, other: 1 }, /"other"/],
    [{ groups: [], format: 2 }, /format/],
    [{ groups: [], format: 1, tenant: 'a b' }, /tenant/],
    [{ groups: [], format: 1, tenant: 't2' }, /of tenant "t2", not "t1"/],
    [{ groups: [], format: 1, revision: 1.5 }, /revision/],
    [{ groups: 'x', format: 1 }, /groups/],
    [{ groups: [null], format: 1 }, /groups\[0\]/],
    [{ groups: [['g']], format: 1 }, /groups\[0\]/],
    [{ groups: [{ name: 'g', permissions: 'x', users: [] }], format: 1 }, /groups\[0\]\.permissions/],
    [{ groups: [{ name: 'g', permissions: [], users: [1] }], format: 1 }, /groups\[0\]\.users\[0\]/]
  ]
  for (const [document, message] of bad) {
    await t.rejects(pc.importTenant('t1', document as never), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message }, JSON.stringify(document))
  }
  // Inclusions closing a cycle: the 409 of a write, naming the path.
  const cycle = { groups: [group({ includes: ['h'] }), group({ name: 'h', includes: ['k'] }), group({ name: 'k', includes: ['g'] })], format: 1 }
  t.match(await request(app, 'PUT', '/tenants/t1/import', cycle), { status: 409, body: { code: 'FST_POLICY_CACHE_INCLUSION_CYCLE', message: /cycle k → g → h → k/ } })
  await t.rejects(pc.importTenant('t1', { groups: [group({ includes: ['g'] })], format: 1 }), { code: 'FST_POLICY_CACHE_INCLUSION_CYCLE', path: ['g', 'g'] })
  await t.rejects(pc.importTenant('t1', { groups: [], format: 1 }, { ifRevision: -1 }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  await t.rejects(pc.importTenant('t1', { groups: [], format: 1 }, { actor: '\n' }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  await t.rejects(pc.importTenant('-', { groups: [], format: 1 }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  t.same(await pc.exportTenant('t1'), { tenant: 't1', revision: 1, groups: POLICY, format: 1 }, 'nothing written')
})

test('maxImportFacts: a larger document answers 413, coded, nothing written; the body limit fits it', async (t) => {
  const app = await buildApp(t, { maxImportFacts: 4 })
  const five = [{ name: 'g', permissions: ['a', 'b'], users: ['u', 'v'] }]
  const res = await request(app, 'PUT', '/tenants/t1/import', { groups: five, format: 1 })
  t.same(res.body, { statusCode: 413, code: 'FST_POLICY_CACHE_IMPORT_TOO_LARGE', error: 'Payload Too Large', message: 'A document of 5 facts (groups, grants and memberships) is over maxImportFacts (4)' })
  await t.rejects(app.policyCache.importTenant('t1', { groups: five, format: 1 }), { code: 'FST_POLICY_CACHE_IMPORT_TOO_LARGE' })
  t.equal(await app.policyCache.revision('t1'), 0, 'nothing written')
  t.match(await request(app, 'PUT', '/tenants/t1/import', { groups: [{ name: 'g', permissions: ['a'], users: ['u', 'v'] }], format: 1 }), { status: 200, body: { revision: 1 } }, 'four pass')

  // The default limit: 10 000 facts of the largest size, pretty-printed, fit the body limit.
  const big = await buildApp(t)
  const grant = (i: number) => `p${String(i).padStart(4, '0')}:${'x'.repeat(250)}`
  const groups = Array.from({ length: 10 }, (_, g) => ({ name: `g${g}`.padEnd(128, 'x'), permissions: Array.from({ length: 999 }, (_, i) => grant(i)), users: [] }))
  const payload = JSON.stringify({ groups, format: 1 }, null, 2)
  const imported = await big.inject({ method: 'PUT', url: '/tenants/t1/import', payload, headers: { 'content-type': 'application/json' } })
  t.equal(imported.statusCode, 200, `${payload.length} bytes`)
  const over = await big.inject({ method: 'PUT', url: '/tenants/t1/import', payload: payload + ' '.repeat(3_100_000 - payload.length), headers: { 'content-type': 'application/json' } })
  t.match(over.json(), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' }, 'past the body limit: refused before parsing')
})

test('a store that fails: the listing, the export, the deletion and the import answer a coded 503', async (t) => {
  const store = new InstrumentedStore()
  const app = await buildApp(t, { db: store })
  await app.policyCache.createGroup('t1', 'g')
  store.failing = new Error('connection refused')
  for (const [method, url, payload] of [['GET', '/tenants'], ['GET', '/tenants/t1/export'], ['DELETE', '/tenants/t1'], ['PUT', '/tenants/t1/import', { groups: [], format: 1 }]] as const) {
    t.match(await request(app, method, url, payload), { status: 503, body: { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' } }, `${method} ${url}`)
  }
  store.failing = undefined
  t.same(await app.policyCache.exportTenant('t1'), { tenant: 't1', revision: 1, groups: [{ name: 'g', permissions: [], users: [], includes: [] }], format: 1 }, 'nothing written')
})

test('128-character tenant ids: deleted, exported and imported through the fallback routes', async (t) => {
  const app = await buildApp(t)
  const tenant = 't'.repeat(128)
  const url = `/tenants/${tenant}`
  t.match(await request(app, 'PUT', `${url}/import`, { groups: POLICY, format: 1 }), { status: 200, body: { tenant, revision: 1 } })
  t.same((await get(app, `${url}/export`)).body, { tenant, revision: 1, groups: POLICY, format: 1 })
  t.match(await request(app, 'DELETE', `${url}?ifRevision=0`), { status: 409, headers: { 'policy-revision': '1' } })
  t.equal((await request(app, 'DELETE', `${url}?other=1`)).status, 400)
  t.match(await request(app, 'DELETE', `${url}?ifRevision=1`), { status: 200, body: { tenant, deleted: true, revision: 2 } })
  t.equal((await request(app, 'DELETE', `${url}/groups`)).status, 404, 'other paths: not found')
  t.equal((await request(app, 'PUT', `${url}/export`, { groups: [], format: 1 })).status, 404)
})

test('the lifecycle routes are behind routeHooks like the other policy routes', async (t) => {
  let allowed = false
  const app = await buildApp(t, {
    routeHooks: {
      onRequest: async (_request, reply) => {
        if (!allowed) await reply.code(401).send({ statusCode: 401, code: 'HOST_UNAUTHORIZED', error: 'Unauthorized', message: 'admin token required' })
      }
    }
  })
  await app.policyCache.importTenant('t1', { groups: POLICY, format: 1 })
  const long = 'x'.repeat(120)
  const routes = [
    ['GET', '/tenants'], ['GET', '/tenants/t1/export'], ['PUT', '/tenants/t1/import', { groups: [], format: 1 }], ['DELETE', '/tenants/t1'],
    ['GET', `/tenants/${long}/export`], ['PUT', `/tenants/${long}/import`, { groups: POLICY, format: 1 }], ['DELETE', `/tenants/${long}`]
  ] as const
  for (const [method, url, payload] of routes) t.match(await request(app, method, url, payload), { status: 401, body: { code: 'HOST_UNAUTHORIZED' } }, `${method} ${url}`)
  t.same(await app.policyCache.exportTenant('t1'), { tenant: 't1', revision: 1, groups: POLICY, format: 1 }, 'nothing written')
  allowed = true
  t.equal((await request(app, 'DELETE', '/tenants/t1')).status, 200)
})

test('writes through the routes name the identity\'s user as the actor of a deletion and an import', async (t) => {
  const app = await buildApp(t, { identify: (request) => ({ tenant: 'admin', user: String(request.headers['x-user']) }) })
  await app.inject({ method: 'PUT', url: '/tenants/t1/import', payload: { groups: POLICY, format: 1 }, headers: { 'x-user': 'importer' } })
  await app.inject({ method: 'DELETE', url: '/tenants/t1', headers: { 'x-user': 'deleter' } })
  t.match((await app.policyCache.changes('t1')).entries, [{ revision: 1, actor: 'importer' }, { revision: 2, actor: 'deleter' }])
})

/**
 * A random tenant policy: a few groups, grants, members and inclusions from small domains (so
 * documents overlap; a group includes only groups after it in name order, so never a cycle).
 */
const policy = fc.uniqueArray(fc.record({
  name: fc.constantFrom('admins', 'editors', 'readers', 'billing', 'x.y@z'),
  permissions: fc.uniqueArray(fc.constantFrom('*', 'docs:*', 'docs:read', 'docs:drafts:edit', 'billing:pay'), { maxLength: 4 }),
  users: fc.uniqueArray(fc.constantFrom('alice', 'bob', 'carol', 'dave', 'e.ve@corp'), { maxLength: 4 }),
  includes: fc.uniqueArray(fc.constantFrom('admins', 'editors', 'readers', 'billing', 'x.y@z'), { maxLength: 3 })
}), { selector: (group) => group.name, minLength: 1, maxLength: 5 })
  .map((groups) => groups.map((group) => ({ ...group, includes: group.includes.filter((name) => name > group.name && groups.some((other) => other.name === name)) })))

test('property: export → import into an empty database round-trips exactly; import of B over A leaves exactly B', async (t) => {
  const source = await buildApp(t)
  const target = await buildApp(t)
  let run = 0
  await fc.assert(fc.asyncProperty(policy, policy, async (a, b) => {
    const tenant = `t${run++}`
    // A written change by change on the source; its export is what it holds, sorted.
    for (const group of a) {
      await source.policyCache.createGroup(tenant, group.name)
      for (const permission of group.permissions) await source.policyCache.addPermission(tenant, group.name, permission)
      for (const user of group.users) await source.policyCache.assignUser(tenant, group.name, user)
    }
    for (const group of a) for (const included of group.includes) await source.policyCache.includeGroup(tenant, group.name, included)
    const exported = (await get(source, `/tenants/${tenant}/export`)).body
    const imported = await request(target, 'PUT', `/tenants/${tenant}/import`, exported)
    t.equal(imported.body.revision, 1, 'one revision on the target')
    const roundTrip = (await get(target, `/tenants/${tenant}/export`)).body
    t.same(roundTrip, { ...exported, revision: 1 }, 'the same document, apart from the revision')

    const other = { tenant, revision: 9, groups: b, format: 1 }
    const over = await request(target, 'PUT', `/tenants/${tenant}/import`, other)
    t.equal(over.status, 200)
    const after = await target.policyCache.exportTenant(tenant)
    const sorted = [...b].sort((x, y) => x.name < y.name ? -1 : 1).map((g) => ({ name: g.name, permissions: [...g.permissions].sort(), users: [...g.users].sort(), includes: [...g.includes].sort() }))
    t.same(after.groups, sorted, 'B over A leaves exactly B')
    t.equal(after.revision, over.body.changed === true ? 2 : 1, 'at most one more revision')
    t.same((await get(target, `/tenants/${tenant}`)).body.groups, sorted, 'and the cache answers it')
  }), { seed: 1212, numRuns: 40 })
})

test('POST /create-group after a deletion: a check with the deletion\'s revision as minRevision never sees the old grants', async (t) => {
  const app = await buildApp(t)
  await app.policyCache.importTenant('t1', { groups: POLICY, format: 1 })
  const { revision } = await app.policyCache.deleteTenant('t1')
  await post(app, '/create-group', { tenant: 't1', group: 'admins' })
  t.same((await get(app, `/check-access?tenant=t1&user=carol&permission=x&minRevision=${revision}`)).body, { allowed: false, revision: revision + 1 })
})
