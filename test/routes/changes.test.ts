/**
 * The audit feed, `GET /tenants/:tenant/changes` and `app.policyCache.changes`: each entry's change,
 * origin, actor (the identity's user through the routes, the `actor` write option through the
 * decorator) and commit time; paging with `after` and `limit`; a strict query; 410 for pruned revisions.
 */
import type { FastifyRequest } from 'fastify'
import { test } from 'tap'
import { MemoryPolicyStore } from '../../examples/custom-store.js'
import type { ChangesPage } from '../../lib/model.js'
import { buildApp, get } from '../helpers/app.js'

/** The identity a request carries: the `x-tenant` and `x-user` headers, when both are there. */
function identify (request: FastifyRequest) {
  const tenant = request.headers['x-tenant']
  const user = request.headers['x-user']
  return typeof tenant === 'string' && typeof user === 'string' ? { tenant, user } : undefined
}

async function postAs (app: Awaited<ReturnType<typeof buildApp>>, user: string | undefined, url: string, payload: object) {
  const res = await app.inject({ method: 'POST', url, payload, headers: user === undefined ? {} : { 'x-tenant': 'admin', 'x-user': user } })
  return { status: res.statusCode, body: res.json() }
}

test('each entry: the change, the instance, who made it and when', async (t) => {
  const app = await buildApp(t, { identify, serverId: 'server-a' })
  const before = Date.now()
  t.equal((await postAs(app, 'alice', '/create-group', { tenant: 't1', group: 'g' })).status, 200)
  t.equal((await postAs(app, 'bob', '/batch', { tenant: 't1', changes: [{ operation: 'assign-user', group: 'g', user: 'u1' }, { operation: 'add-permission', group: 'g', permission: 'docs:*' }] })).status, 200)
  t.equal((await postAs(app, undefined, '/assign-user', { tenant: 't1', group: 'g', user: 'u2' })).status, 200, 'a request without an identity')
  t.equal((await postAs(app, 'carol', '/assign-user', { tenant: 't1', group: 'g', user: 'u2' })).body.changed, false, 'a write that changes nothing is not logged')
  await app.policyCache.removePermission('t1', 'g', 'docs:*', { actor: 'nightly cleanup job' })
  await app.policyCache.unassignUser('t1', 'g', 'u1')

  const res = await get(app, '/tenants/t1/changes')
  t.equal(res.status, 200)
  t.equal(res.headers['policy-revision'], '5')
  const { entries, ...head } = res.body
  t.strictSame(head, { tenant: 't1', revision: 5, oldestRevision: 1 })
  t.strictSame(entries.map(({ committedAt, ...entry }: { committedAt: number }) => entry), [
    { revision: 1, operation: 'create-group', group: 'g', origin: 'server-a', actor: 'alice' },
    { revision: 2, changes: [{ operation: 'assign-user', group: 'g', user: 'u1' }, { operation: 'add-permission', group: 'g', permission: 'docs:*' }], origin: 'server-a', actor: 'bob' },
    { revision: 3, operation: 'assign-user', group: 'g', user: 'u2', origin: 'server-a', actor: null },
    { revision: 4, operation: 'remove-permission', group: 'g', permission: 'docs:*', origin: 'server-a', actor: 'nightly cleanup job' },
    { revision: 5, operation: 'unassign-user', group: 'g', user: 'u1', origin: 'server-a', actor: null }
  ])
  // SQLite's clock is this machine's: the commit times fall within the test (a sanity check, not a timing one).
  const times = entries.map((entry: { committedAt: number }) => entry.committedAt)
  t.ok(times.every((time: number) => Number.isInteger(time) && time >= before - 1000 && time <= Date.now() + 1000), `epoch ms (${times.join(', ')})`)

  const feed = await app.policyCache.changes('t1', { after: 3 })
  t.match(feed, { tenant: 't1', revision: 5, oldestRevision: 1, entries: [{ revision: 4, change: { op: 'remove-permission', group: 'g', permission: 'docs:*' }, actor: 'nightly cleanup job' }, { revision: 5 }] }, 'the decorator: the same entries')
  t.equal(feed.entries.length, 2)
})

test('identify answering null: no actor', async (t) => {
  const app = await buildApp(t, { identify: () => null })
  await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' } })
  t.match((await get(app, '/tenants/t1/changes')).body.entries, [{ revision: 1, actor: null }])
})

test('an identify that throws fails the write through the routes: its error, nothing written', async (t) => {
  const app = await buildApp(t, { identify: () => { throw Object.assign(new Error('token expired'), { statusCode: 401, code: 'HOST_TOKEN_EXPIRED' }) } })
  const res = await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' } })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'HOST_TOKEN_EXPIRED')
  t.equal(await app.policyCache.revision('t1'), 0, 'nothing written')
})

test('without identify, route writes have no actor; the decorator\'s actor still counts', async (t) => {
  const app = await buildApp(t)
  await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' }, headers: { 'x-tenant': 'admin', 'x-user': 'alice' } })
  await app.policyCache.batch('t1', [{ op: 'create-group', group: 'h' }, { op: 'create-group', group: 'k' }], { actor: 'provisioning' })
  t.match((await get(app, '/tenants/t1/changes')).body.entries, [{ revision: 1, actor: null }, { revision: 2, actor: 'provisioning' }])
})

test('a malformed identity user or actor is a coded 400, nothing written', async (t) => {
  const app = await buildApp(t, { identify: (request) => ({ tenant: 'admin', user: String(request.headers['x-user']) }) })
  const invalid = { statusCode: 400, code: 'FST_POLICY_CACHE_INVALID_INPUT' }
  const long = await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' }, headers: { 'x-user': 'a'.repeat(256) } })
  t.match({ statusCode: long.statusCode, ...long.json() }, { ...invalid, message: /^Invalid actor: / })
  const batch = await app.inject({ method: 'POST', url: '/batch', payload: { tenant: 't1', changes: [{ operation: 'create-group', group: 'g' }] }, headers: { 'x-user': 'a'.repeat(256) } })
  t.equal(batch.statusCode, 400)
  for (const actor of ['', 'two\nlines', 'x'.repeat(256)]) {
    await t.rejects(app.policyCache.createGroup('t1', 'g', { actor }), { ...invalid, message: /^Invalid actor: / }, JSON.stringify(actor))
    await t.rejects(app.policyCache.batch('t1', [{ op: 'create-group', group: 'g' }], { actor }), invalid)
  }
  t.equal(await app.policyCache.revision('t1'), 0, 'nothing written')
  t.equal((await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' }, headers: { 'x-user': 'a'.repeat(255) } })).statusCode, 200, '255 characters is the most')
})

test('paging: after and limit; after at or beyond the current revision is an empty page', async (t) => {
  const app = await buildApp(t)
  for (let i = 0; i < 130; i++) await app.policyCache.createGroup('t1', `g${i}`)
  const revisions = (body: { entries: Array<{ revision: number }> }) => body.entries.map((entry) => entry.revision)
  t.strictSame(revisions((await get(app, '/tenants/t1/changes')).body), Array.from({ length: 100 }, (_, i) => i + 1), 'default limit 100')
  t.strictSame(revisions((await get(app, '/tenants/t1/changes?after=100')).body), Array.from({ length: 30 }, (_, i) => i + 101), 'the next page')
  t.strictSame(revisions((await get(app, '/tenants/t1/changes?after=5&limit=3')).body), [6, 7, 8])
  t.equal((await get(app, '/tenants/t1/changes?limit=1000')).body.entries.length, 130, 'limit up to 1000')
  t.strictSame((await get(app, '/tenants/t1/changes?after=130')).body, { tenant: 't1', revision: 130, oldestRevision: 1, entries: [] })
  t.strictSame((await get(app, '/tenants/t1/changes?after=999999')).body.entries, [])
  t.strictSame((await get(app, '/tenants/never/changes')).body, { tenant: 'never', revision: 0, oldestRevision: null, entries: [] }, 'a tenant never written')
})

test('the query is strict: unknown parameters, non-integers and limits outside 1–1000 are coded 400s', async (t) => {
  const app = await buildApp(t)
  await app.policyCache.createGroup('t1', 'g')
  for (const query of ['limit=0', 'limit=1001', 'limit=-1', 'limit=1.5', 'after=-1', 'after=1.5', 'after=abc', 'after=', 'after=01', 'after=9999999999999999', 'from=0', 'after=0&x=1', 'after=1&after=2']) {
    const res = await get(app, `/tenants/t1/changes?${query}`)
    t.equal(res.status, 400, query)
    t.match(res.body.code, /^FST_/, `${query}: coded`)
  }
  t.equal((await get(app, '/tenants/bad%20id/changes')).status, 400, 'a malformed tenant')
  await t.rejects(app.policyCache.changes('t1', { limit: 1001 }), { statusCode: 400, code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /^Invalid limit: / })
  await t.rejects(app.policyCache.changes('t1', { after: -1 }), { statusCode: 400, message: /^Invalid after: / })
  await t.rejects(app.policyCache.changes('t1', { after: 0.5 }), { statusCode: 400, message: /^Invalid after: / })
  await t.rejects(app.policyCache.changes('t1', { after: '1' as never }), { statusCode: 400, message: /^Invalid after: / })
  for (const limit of [0, 1.5, '5' as never]) {
    await t.rejects(app.policyCache.changes('t1', { limit }), { statusCode: 400, message: /^Invalid limit: / }, JSON.stringify(limit))
  }
  t.equal((await app.policyCache.changes('t1', { after: 0, limit: 1000 })).entries.length, 1, 'the bounds themselves')
  await t.rejects(app.policyCache.changes('bad id'), { statusCode: 400, message: /^Invalid tenant: / })
})

test('revisions already pruned: 410 FST_POLICY_CACHE_CHANGES_PRUNED naming the oldest kept', async (t) => {
  const app = await buildApp(t, { changelogRetention: 10 })
  for (let i = 0; i < 130; i++) await app.policyCache.createGroup('t1', `g${i}`)
  const { oldestRevision } = await app.policyCache.changes('t1', { after: 129 })
  t.equal(oldestRevision, 119, 'pruned at revision 128 down to its newest 10')
  for (const after of [0, 50, 117]) {
    const res = await get(app, `/tenants/t1/changes?after=${after}`)
    t.equal(res.status, 410, `after=${after}`)
    t.strictSame(res.body, {
      statusCode: 410,
      code: 'FST_POLICY_CACHE_CHANGES_PRUNED',
      error: 'Gone',
      message: `The changelog of tenant "t1" no longer holds the revisions after ${after}: the oldest kept is revision 119 (ask after 118) (changelogRetention)`
    })
  }
  await t.rejects(app.policyCache.changes('t1'), { statusCode: 410, code: 'FST_POLICY_CACHE_CHANGES_PRUNED', oldestRevision: 119 })
  t.match((await get(app, '/tenants/t1/changes?after=118')).body, { revision: 130, oldestRevision: 119, entries: [{ revision: 119 }] }, 'from the oldest kept')
  t.equal((await get(app, '/tenants/t1/changes?after=130')).status, 200, 'at the current revision: nothing to miss')
})

test('a tenant id longer than maxParamLength reaches the feed too, with the same strict query', async (t) => {
  const app = await buildApp(t)
  const tenant = 'T'.repeat(128)
  await app.policyCache.createGroup(tenant, 'g', { actor: 'alice' })
  const res = await get(app, `/tenants/${tenant}/changes?after=0&limit=5`)
  t.equal(res.status, 200)
  t.match(res.body, { tenant, revision: 1, entries: [{ revision: 1, operation: 'create-group', group: 'g', actor: 'alice' }] })
  const bad = await get(app, `/tenants/${tenant}/changes?limit=0`)
  t.equal(bad.status, 400)
  t.equal(bad.body.code, 'FST_POLICY_CACHE_INVALID_INPUT')
  t.equal((await get(app, `/tenants/${tenant}/changes?limit=5000`)).status, 400)
  t.equal((await get(app, `/tenants/${tenant}/changes?since=1`)).status, 400, 'unknown parameters refused here too')
})

test('the feed is behind routeHooks like the other policy routes', async (t) => {
  const app = await buildApp(t, {
    routeHooks: {
      onRequest: async (request, reply) => {
        if (request.headers.authorization !== 'Bearer admin') await reply.code(401).send({ statusCode: 401, code: 'HOST_UNAUTHORIZED', error: 'Unauthorized', message: 'admin token required' })
      }
    }
  })
  await app.policyCache.createGroup('t1', 'g')
  for (const url of ['/tenants/t1/changes', `/tenants/${'T'.repeat(128)}/changes`]) {
    const denied = await app.inject({ method: 'GET', url })
    t.equal(denied.statusCode, 401, url)
    t.equal(denied.json().code, 'HOST_UNAUTHORIZED')
  }
  t.equal((await app.inject({ method: 'GET', url: '/tenants/t1/changes', headers: { authorization: 'Bearer admin' } })).statusCode, 200)
})

test('a store whose changelog holds nothing for a written tenant: 410 saying none is kept', async (t) => {
  class Forgetful extends MemoryPolicyStore {
    override async changes (): Promise<ChangesPage> {
      return { revision: 3, oldestRevision: null, entries: [] }
    }
  }
  const app = await buildApp(t, { db: new Forgetful() })
  const res = await get(app, '/tenants/t1/changes?after=1')
  t.equal(res.status, 410)
  t.equal(res.body.message, 'The changelog of tenant "t1" no longer holds the revisions after 1: it holds none (changelogRetention)')
  await t.rejects(app.policyCache.changes('t1'), { code: 'FST_POLICY_CACHE_CHANGES_PRUNED', oldestRevision: null })
  t.equal((await get(app, '/tenants/t1/changes?after=3')).status, 200, 'at the current revision: nothing missed')
})
