/**
 * POST /batch and `policyCache.batch`: several changes written atomically at one revision; which had
 * an effect; a failing change writes nothing and is named; the size limit; the admin protection.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { test } from 'tap'
import { buildApp, get, post } from '../helpers/app.js'
import { InstrumentedStore } from '../helpers/instrumented-store.js'

const onboarding = [
  { operation: 'create-group', group: 'editors' },
  { operation: 'add-permission', group: 'editors', permission: 'documents:*' },
  { operation: 'assign-user', group: 'editors', user: 'alice' },
  { operation: 'assign-user', group: 'editors', user: 'alice' },
  { operation: 'assign-user', group: 'editors', user: 'bob' }
]

test('a batch applies its changes in order at one revision and says which had an effect', async (t) => {
  const app = await buildApp(t)
  const res = await post(app, '/batch', { tenant: 't1', changes: onboarding })
  t.equal(res.status, 200)
  t.same(res.body, { tenant: 't1', revision: 1, changed: true, effects: [true, true, true, false, true], peers: { acked: 0, total: 0 } })
  t.equal(res.headers['policy-revision'], '1')
  t.match((await get(app, '/check-access?tenant=t1&user=bob&permission=documents:read')).body, { allowed: true, revision: 1 })
  const view = { tenant: 't1', revision: 1, groups: [{ name: 'editors', permissions: ['documents:*'], users: ['alice', 'bob'], includes: [] }] }
  t.same((await get(app, '/tenants/t1')).body, view)
  await app.policyCache.refresh('t1')
  t.same((await get(app, '/tenants/t1')).body, view, 'the database agrees after a reload')

  const again = await post(app, '/batch', { tenant: 't1', changes: onboarding })
  t.same(again.body, { tenant: 't1', revision: 1, changed: false, effects: [false, false, false, false, false], peers: { acked: 0, total: 0 } }, 'nothing changes, nothing bumps')
  t.match((await post(app, '/create-group', { tenant: 't1', group: 'other' })).body, { revision: 2 }, 'the next write takes the next revision')
})

test('a failing change writes nothing of the batch: 404 naming its index', async (t) => {
  const app = await buildApp(t)
  await post(app, '/create-group', { tenant: 't1', group: 'g' })
  const res = await post(app, '/batch', {
    tenant: 't1',
    changes: [
      { operation: 'assign-user', group: 'g', user: 'alice' },
      { operation: 'delete-group', group: 'g' },
      { operation: 'assign-user', group: 'g', user: 'bob' }
    ]
  })
  t.equal(res.status, 404)
  t.same(res.body, {
    statusCode: 404,
    code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND',
    error: 'Not Found',
    message: 'changes[2]: Group "g" does not exist in tenant "t1"'
  })
  await app.policyCache.refresh('t1')
  t.same((await get(app, '/tenants/t1')).body, { tenant: 't1', revision: 1, groups: [{ name: 'g', permissions: [], users: [], includes: [] }] }, 'nothing written')
  await t.rejects(app.policyCache.batch('t1', [{ op: 'create-group', group: 'h' }, { op: 'add-permission', group: 'x', permission: 'a' }]),
    { code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND', index: 1 }, 'the decorator: the same error, with its index')
  t.equal(await app.policyCache.revision('t1'), 1)
})

test('malformed batches are refused with a 400, nothing written', async (t) => {
  const app = await buildApp(t)
  const cases: Array<[unknown, string, RegExp?]> = [
    [{ tenant: 't1', changes: [] }, 'FST_ERR_VALIDATION'],
    [{ tenant: 't1' }, 'FST_ERR_VALIDATION'],
    [{ tenant: 't1', changes: [{ operation: 'drop-table', group: 'g' }] }, 'FST_ERR_VALIDATION'],
    [{ tenant: 't1', changes: [{ operation: 'create-group', group: 'g', extra: 1 }] }, 'FST_ERR_VALIDATION'],
    [{ tenant: 't1', changes: [{ operation: 'create-group', group: 'g' }], ifRevision: -1 }, 'FST_ERR_VALIDATION'],
    [{ tenant: 't1', changes: [{ operation: 'create-group', group: 'g' }, { operation: 'create-group', group: 'h', user: 'alice' }] },
      'FST_POLICY_CACHE_INVALID_INPUT', /^changes\[1\]: Invalid change: create-group takes group only/],
    [{ tenant: 't1', changes: [{ operation: 'create-group', group: 'g' }, { operation: 'add-permission', group: 'g' }] },
      'FST_POLICY_CACHE_INVALID_INPUT', /^changes\[1\]: Invalid permission/]
  ]
  for (const [body, code, message] of cases) {
    const res = await post(app, '/batch', body)
    t.equal(res.status, 400, JSON.stringify(body))
    t.equal(res.body.code, code)
    if (message !== undefined) t.match(res.body.message, message)
  }
  t.equal(await app.policyCache.revision('t1'), 0, 'nothing written')
  await t.rejects(app.policyCache.batch('t1', []), { code: 'FST_POLICY_CACHE_INVALID_INPUT', statusCode: 400 })
})

test('maxBatchChanges: a larger batch answers 413, coded, nothing written', async (t) => {
  const app = await buildApp(t, { maxBatchChanges: 3 })
  const res = await post(app, '/batch', { tenant: 't1', changes: onboarding.slice(0, 4) })
  t.equal(res.status, 413)
  t.same(res.body, {
    statusCode: 413,
    code: 'FST_POLICY_CACHE_BATCH_TOO_LARGE',
    error: 'Payload Too Large',
    message: 'A batch of 4 changes is over maxBatchChanges (3): split it'
  })
  t.equal(await app.policyCache.revision('t1'), 0)
  t.equal((await post(app, '/batch', { tenant: 't1', changes: onboarding.slice(0, 3) })).status, 200, 'at the limit')
  await t.rejects(app.policyCache.batch('t1', onboarding.slice(0, 4).map(({ operation, ...fields }) => ({ op: operation, ...fields }) as never)),
    { code: 'FST_POLICY_CACHE_BATCH_TOO_LARGE', statusCode: 413 })
})

test('the body limit lets a maximal batch through, and refuses a larger body before parsing', async (t) => {
  const app = await buildApp(t)
  const long = (c: string) => c + 'x'.repeat(127)
  const group = long('g')
  await app.policyCache.createGroup(long('t'), group)
  // The largest change there is, 1 000 times (the default maxBatchChanges), pretty-printed.
  const changes = Array.from({ length: 1000 }, (_, i) => ({ operation: 'remove-permission', group, permission: `${i}:`.padEnd(256, 'p') }))
  const body = JSON.stringify({ tenant: long('t'), changes, ifRevision: Number.MAX_SAFE_INTEGER }, null, 1)
  const res = await app.inject({ method: 'POST', url: '/batch', payload: body, headers: { 'content-type': 'application/json' } })
  t.equal(res.statusCode, 409, `${body.length} bytes read: the tenant is not at ifRevision`)
  t.equal(res.json().code, 'FST_POLICY_CACHE_REVISION_CONFLICT')
  const padded = JSON.stringify({ tenant: 't1', changes: [{ operation: 'create-group', group: 'g' }] }).replace('{', '{' + ' '.repeat(600 * 1024))
  const over = await app.inject({ method: 'POST', url: '/batch', payload: padded, headers: { 'content-type': 'application/json' } })
  t.equal(over.statusCode, 413)
  t.equal(over.json().code, 'FST_ERR_CTP_BODY_TOO_LARGE')
  t.equal(await app.policyCache.revision('t1'), 0)
})

test('/batch is behind routeHooks like the other policy routes', async (t) => {
  const auth = async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.headers.authorization !== 'Bearer admin') await reply.code(401).send({ statusCode: 401, code: 'HOST_UNAUTHORIZED', error: 'Unauthorized', message: 'admin token required' })
  }
  const app = await buildApp(t, { routeHooks: { onRequest: auth } })
  const denied = await app.inject({ method: 'POST', url: '/batch', payload: { tenant: 't1', changes: onboarding } })
  t.equal(denied.statusCode, 401)
  t.equal(denied.json().code, 'HOST_UNAUTHORIZED')
  t.equal(await app.policyCache.revision('t1'), 0, 'nothing written')
  const allowed = await app.inject({ method: 'POST', url: '/batch', payload: { tenant: 't1', changes: onboarding }, headers: { authorization: 'Bearer admin' } })
  t.equal(allowed.statusCode, 200)
})

test('the route is mounted with described, closed schemas (OpenAPI)', async (t) => {
  const app = await buildApp(t)
  t.ok(app.hasRoute({ method: 'POST', url: '/batch' }))
  const { BatchBody, BatchChangeBody, BatchReply } = await import('../../lib/routes/schemas.js')
  for (const schema of [BatchBody, BatchChangeBody, BatchReply]) t.match(schema, { description: String, additionalProperties: false })
})

test('a custom store that reports no effects for a batch: every change counts as effective, the cache stays right', async (t) => {
  class NoEffects extends InstrumentedStore {
    override async write (...args: Parameters<InstrumentedStore['write']>) {
      const { effects: _effects, ...result } = await super.write(...args)
      return result
    }
  }
  const app = await buildApp(t, { db: new NoEffects() })
  await app.policyCache.createGroup('t1', 'g')
  await app.policyCache.warm(['t1'])
  const outcome = await app.policyCache.batch('t1', [{ op: 'create-group', group: 'g' }, { op: 'assign-user', group: 'g', user: 'alice' }])
  t.match(outcome, { revision: 2, changed: true, effects: [true, true] })
  t.same((await app.policyCache.tenant('t1')).groups, [{ name: 'g', permissions: [], users: ['alice'], includes: [] }])
  t.match(app.policyCache.stats(), { repairs: 0 }, 'the digest agreed')
  await t.rejects(app.policyCache.batch('t1', 'create-group' as never), { code: 'FST_POLICY_CACHE_INVALID_INPUT' }, 'not an array')
})
