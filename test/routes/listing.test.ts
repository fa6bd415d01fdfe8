/**
 * The listings: GET /tenants/:tenant/groups, /groups/:group/users, /groups/:group/permissions and
 * their decorator methods — sorted pages with an opaque cursor, walked exactly once; unknown query
 * parameters, bad limits and bad cursors refused with a coded 400; minRevision; long ids; routeHooks.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { test } from 'tap'
import { MemoryPolicyStore } from '../../examples/custom-store.js'
import type { Change } from '../../lib/model.js'
import policyCache from '../../lib/plugin.js'
import { buildApp, get } from '../helpers/app.js'

const pad = (n: number) => String(n).padStart(3, '0')
const GROUPS = Array.from({ length: 37 }, (_, i) => `group-${pad(i)}`)
const USERS = Array.from({ length: 250 }, (_, i) => `user-${pad(i)}`)
const GRANTS = ['*', 'a:*', 'a:b', 'a:b:*', 'b:c', 'c', 'd:e:f', 'documents:read', 'x.y:z', 'z:*', 'A:b', '0:1']

/** A tenant of 37 groups; `group-000` holds 250 users and 12 grants. Written in batches, shuffled. */
async function seed (app: FastifyInstance, tenant = 't1'): Promise<void> {
  const changes: Change[] = [...GROUPS].reverse().map((group) => ({ op: 'create-group', group }))
  for (const permission of GRANTS) changes.push({ op: 'add-permission', group: 'group-000', permission })
  for (let i = 0; i < USERS.length; i++) changes.push({ op: 'assign-user', group: 'group-000', user: USERS[(i * 97) % USERS.length] })
  for (let at = 0; at < changes.length; at += 500) await app.policyCache.batch(tenant, changes.slice(at, at + 500))
}

/** Walks a listing's pages from the start; returns the keys in order and the number of pages. */
async function walk (app: FastifyInstance, url: string, field: string, limit?: number): Promise<{ keys: string[], pages: number }> {
  const keys: string[] = []
  let cursor: string | null = null
  for (let pages = 1; pages < 1000; pages++) {
    const query = new URLSearchParams()
    if (limit !== undefined) query.set('limit', String(limit))
    if (cursor !== null) query.set('cursor', cursor)
    const res = await get(app, `${url}${query.size > 0 ? '?' + query.toString() : ''}`)
    if (res.status !== 200) throw new Error(`${res.status} ${JSON.stringify(res.body)}`)
    const page = res.body[field] as string[]
    if (page.length > (limit ?? 100)) throw new Error('a page over the limit')
    keys.push(...page)
    cursor = res.body.next
    if (cursor === null) return { keys, pages }
  }
  throw new Error('no last page')
}

const sorted = (keys: string[]) => [...keys].sort()

test('each listing walks its whole set exactly once, sorted, at every page size', async (t) => {
  const app = await buildApp(t)
  await seed(app)
  const sets: Array<[string, string, string[]]> = [
    ['/tenants/t1/groups', 'groups', GROUPS],
    ['/tenants/t1/groups/group-000/users', 'users', USERS],
    ['/tenants/t1/groups/group-000/permissions', 'permissions', GRANTS]
  ]
  for (const [url, field, expected] of sets) {
    for (const limit of [1, 7, 100, 1000, undefined]) {
      const { keys, pages } = await walk(app, url, field, limit)
      t.same(keys, sorted(expected), `${url} limit ${limit}`)
      t.equal(pages, Math.max(1, Math.ceil(expected.length / (limit ?? 100))), `${url} limit ${limit}: pages`)
    }
  }
  const page = await get(app, '/tenants/t1/groups/group-000/users?limit=2')
  t.same(page.body, { tenant: 't1', group: 'group-000', revision: 1, users: ['user-000', 'user-001'], next: page.body.next })
  t.equal(page.headers['policy-revision'], '1')
  t.same((await get(app, '/tenants/t1/groups/group-001/users')).body, { tenant: 't1', group: 'group-001', revision: 1, users: [], next: null }, 'an empty group')
  t.same((await get(app, '/tenants/empty/groups')).body, { tenant: 'empty', revision: 0, groups: [], next: null }, 'a tenant never written')
})

test('the decorator pages the same way', async (t) => {
  const app = await buildApp(t)
  await seed(app)
  const pc = app.policyCache
  const first = await pc.groups('t1', { limit: 30 })
  t.same(first.groups, GROUPS.slice(0, 30))
  t.type(first.next, 'string')
  const second = await pc.groups('t1', { limit: 30, cursor: first.next! })
  t.same(second, { tenant: 't1', revision: 1, groups: GROUPS.slice(30), next: null })
  t.equal((await pc.groupUsers('t1', 'group-000')).users.length, 100, 'default limit 100')
  t.same((await pc.groupPermissions('t1', 'group-000', { limit: 3 })).permissions, sorted(GRANTS).slice(0, 3))
  await t.rejects(pc.groupUsers('t1', 'nope'), { code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND', statusCode: 404 })
  await t.rejects(pc.groupPermissions('t1', 'nope'), { code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND' })
  for (const limit of [0, 1001, 1.5, -1, Number.NaN, '10' as unknown as number]) {
    await t.rejects(pc.groups('t1', { limit }), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /limit/ }, `limit ${String(limit)}`)
  }
  t.equal((await pc.groups('t1', { limit: 1000 })).groups.length, 37, 'limit 1000 accepted')
  await t.rejects(pc.groups('t1', { cursor: 'nope!' }), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /cursor/ })
  await t.rejects(pc.groups('bad tenant'), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /tenant/ })
  await t.rejects(pc.groupUsers('t1', '-x'), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /group/ })
})

test('unknown query parameters, bad limits and bad cursors: a coded 400', async (t) => {
  const app = await buildApp(t)
  await seed(app)
  const cursorOf = (key: string) => Buffer.from(key).toString('base64url')
  for (const url of ['/tenants/t1/groups', '/tenants/t1/groups/group-000/users', '/tenants/t1/groups/group-000/permissions']) {
    for (const query of ['foo=1', 'limit=10&tenant=t1', 'limit=0', 'limit=1001', 'limit=1.5', 'limit=-1', 'limit=', 'limit=abc', 'limit=1&limit=2', 'minRevision=1.5']) {
      const res = await get(app, `${url}?${query}`)
      t.equal(res.status, 400, `${url}?${query}`)
      t.match(res.body, { code: /^FST_/ }, `${url}?${query}: coded`)
    }
    for (const cursor of ['!!', 'YWxpY2U=', 'YWxpY2V', cursorOf('a b'), cursorOf(''), cursorOf('a\u0000b'), cursorOf('x'.repeat(300)), 'a'.repeat(401)]) {
      const res = await get(app, `${url}?cursor=${encodeURIComponent(cursor)}`)
      t.equal(res.status, 400, `${url} cursor ${cursor.slice(0, 20)}`)
      t.match(res.body.code, /^FST_/)
    }
    t.equal((await get(app, `${url}?cursor=${cursorOf('group-001')}`)).status, 200, 'a cursor naming any valid key resumes after it')
  }
  t.match((await get(app, '/tenants/t1/groups?cursor=!!')).body, { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: 'Invalid cursor: must be the `next` of a previous page' })
  t.match((await get(app, '/tenants/t1/groups?limit=1001')).body, { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /limit/ })
  t.match((await get(app, '/tenants/t1/groups/nope/users')), { status: 404, body: { code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND' } })
  t.match((await get(app, '/tenants/t1/groups/nope/permissions')), { status: 404, body: { code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND' } })
})

test('over a changing tenant a cursor resumes after the last key seen, at the revision then served', async (t) => {
  const app = await buildApp(t)
  const pc = app.policyCache
  await pc.batch('t1', ['b', 'd', 'f', 'h'].map((group) => ({ op: 'create-group', group })))
  const first = await pc.groups('t1', { limit: 2 })
  t.same(first.groups, ['b', 'd'])
  // Before the cursor (never seen), after it (seen), the next key deleted.
  await pc.batch('t1', [{ op: 'create-group', group: 'a' }, { op: 'create-group', group: 'e' }, { op: 'delete-group', group: 'f' }])
  const second = await pc.groups('t1', { limit: 2, cursor: first.next!, minRevision: first.revision })
  t.same(second.groups, ['e', 'h'])
  t.equal(second.revision, first.revision + 1)
  t.equal(second.next, null)
})

test('minRevision: a cache behind catches up first; a database behind → 412', async (t) => {
  const store = new MemoryPolicyStore()
  const app = await buildApp(t, { db: store })
  await app.policyCache.createGroup('t1', 'g')
  t.same((await get(app, '/tenants/t1/groups')).body.groups, ['g'])
  await store.write('t1', { op: 'create-group', group: 'h' }, 'elsewhere')
  await store.write('t1', { op: 'assign-user', group: 'h', user: 'alice' }, 'elsewhere')
  t.same((await get(app, '/tenants/t1/groups')).body.groups, ['g'], 'stale without a token')
  t.same((await get(app, '/tenants/t1/groups?minRevision=2')).body, { tenant: 't1', revision: 3, groups: ['g', 'h'], next: null })
  t.same((await get(app, '/tenants/t1/groups/h/users?minRevision=3')).body.users, ['alice'])
  t.match(await get(app, '/tenants/t1/groups?minRevision=9'), { status: 412, body: { code: 'FST_POLICY_CACHE_REVISION_AHEAD' } })
  t.match(await get(app, '/tenants/t1/groups/h/permissions?minRevision=9'), { status: 412, body: { code: 'FST_POLICY_CACHE_REVISION_AHEAD' } })
  await t.rejects(app.policyCache.groupUsers('t1', 'h', { minRevision: 9 }), { code: 'FST_POLICY_CACHE_REVISION_AHEAD' })
})

test('128-character ids past the host\'s maxParamLength: the listings work through the fallback, queries checked alike', async (t) => {
  const app = Fastify({ maxParamLength: 20 })
  t.teardown(() => app.close())
  await app.register(policyCache, { syncIntervalMs: 0 })
  const tenant = 't' + 'x'.repeat(127)
  const group = 'g' + 'y'.repeat(127)
  await app.policyCache.batch(tenant, [{ op: 'create-group', group }, { op: 'create-group', group: 'a' }, { op: 'add-permission', group, permission: 'doc:read' }, { op: 'assign-user', group, user: 'u' + 'z'.repeat(127) }])
  const groups = await get(app, `/tenants/${tenant}/groups?limit=1`)
  t.same(groups.body, { tenant, revision: 1, groups: ['a'], next: Buffer.from('a').toString('base64url') })
  t.same((await get(app, `/tenants/${tenant}/groups?limit=1&cursor=${groups.body.next}`)).body.groups, [group])
  t.same((await get(app, `/tenants/${tenant}/groups/${group}/users`)).body, { tenant, group, revision: 1, users: ['u' + 'z'.repeat(127)], next: null })
  t.same((await get(app, `/tenants/${tenant}/groups/${group}/permissions`)).body, { tenant, group, revision: 1, permissions: ['doc:read'], next: null })
  t.equal((await get(app, `/tenants/${tenant}/groups`)).headers['policy-revision'], '1')
  for (const url of [`/tenants/${tenant}/groups?foo=1`, `/tenants/${tenant}/groups?limit=0`, `/tenants/${tenant}/groups?cursor=!!`, `/tenants/${tenant}/groups/${group}/users?limit=1&limit=2`,
    `/tenants/${tenant}/groups/${group}/permissions?minRevision=x`, `/tenants/${tenant}/groups/-${group}/users`]) {
    const res = await get(app, url)
    t.equal(res.status, 400, url.slice(140))
    t.match(res.body, { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  }
  t.match(await get(app, `/tenants/${tenant}/groups/nope/users`), { status: 404, body: { code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND' } })
  for (const url of [`/tenants/${tenant}/groups/${group}`, `/tenants/${tenant}/groups/${group}/members`, `/tenants/${tenant}/groups/`]) {
    t.equal((await get(app, url)).status, 404, url.slice(140))
  }
})

test('the listings are behind routeHooks like the other policy routes', async (t) => {
  const app = await buildApp(t, { routeHooks: { onRequest: async (_request, reply) => { await reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'no' }) } } })
  const long = 't' + 'x'.repeat(127)
  for (const url of ['/tenants/t1/groups', '/tenants/t1/groups/g/users', '/tenants/t1/groups/g/permissions', `/tenants/${long}/groups`, `/tenants/${long}/groups/g/users`]) {
    t.equal((await get(app, url)).status, 401, url.slice(0, 40))
  }
})
