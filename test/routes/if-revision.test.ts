/**
 * `ifRevision` on the writes and the batch: a tenant at another revision answers 409
 * FST_POLICY_CACHE_REVISION_CONFLICT saying its current revision (message and `policy-revision`
 * header; `currentRevision` on the decorator's error), and nothing is written.
 */
import { test } from 'tap'
import { buildApp, get, post, WRITE_BODY_FIELDS } from '../helpers/app.js'

const VALUES: Record<string, string> = { tenant: 't1', group: 'g', permission: 'documents:read', user: 'alice', includes: 'g' }

test('every write route honours ifRevision: 409 with the current revision, nothing written', async (t) => {
  const app = await buildApp(t)
  await post(app, '/batch', { tenant: 't1', changes: [{ operation: 'create-group', group: 'g' }, { operation: 'assign-user', group: 'g', user: 'alice' }, { operation: 'add-permission', group: 'g', permission: 'documents:read' }] })
  const before = (await get(app, '/tenants/t1')).body
  const routes = [...Object.entries(WRITE_BODY_FIELDS).filter(([url]) => url !== '/refresh-tenant'), ['/batch', []] as const]
  for (const [url, fields] of routes) {
    const body = url === '/batch'
      ? { tenant: 't1', changes: [{ operation: 'delete-group', group: 'g' }] }
      : Object.fromEntries(fields.map((field) => [field, VALUES[field]]))
    for (const ifRevision of [0, 2, 7]) {
      const res = await post(app, url, { ...body, ifRevision })
      t.equal(res.status, 409, `${url} ifRevision ${ifRevision}`)
      t.same(res.body, {
        statusCode: 409,
        code: 'FST_POLICY_CACHE_REVISION_CONFLICT',
        error: 'Conflict',
        message: `Tenant "t1" is at revision 1, not at ifRevision ${ifRevision}: nothing was written; read the tenant again and retry`
      })
      t.equal(res.headers['policy-revision'], '1', 'the current revision in the header')
    }
  }
  await app.policyCache.refresh('t1')
  t.same((await get(app, '/tenants/t1')).body, before, 'nothing written')
})

test('at the revision the write goes ahead; a chain of conditional writes', async (t) => {
  const app = await buildApp(t)
  t.match((await post(app, '/create-group', { tenant: 't1', group: 'g', ifRevision: 0 })).body, { revision: 1, changed: true }, '0: never written')
  t.match((await post(app, '/assign-user', { tenant: 't1', group: 'g', user: 'alice', ifRevision: 1 })).body, { revision: 2, changed: true })
  t.match((await post(app, '/batch', { tenant: 't1', changes: [{ operation: 'unassign-user', group: 'g', user: 'alice' }], ifRevision: 2 })).body, { revision: 3, effects: [true] })
  t.match((await post(app, '/unassign-user', { tenant: 't1', group: 'g', user: 'alice', ifRevision: 3 })).body, { revision: 3, changed: false }, 'at the revision, changing nothing')
  t.equal((await post(app, '/create-group', { tenant: 't1', group: 'h', ifRevision: 2 })).status, 409, 'a stale read loses')
  t.equal((await post(app, '/create-group', { tenant: 't2', group: 'g', ifRevision: 1 })).status, 409, 'a tenant never written is at 0')
})

test('the decorator: every write takes { ifRevision }; the error carries currentRevision', async (t) => {
  const app = await buildApp(t)
  const pc = app.policyCache
  await pc.createGroup('t1', 'g', { ifRevision: 0 })
  const conflict = { code: 'FST_POLICY_CACHE_REVISION_CONFLICT', statusCode: 409, currentRevision: 1 }
  await t.rejects(pc.createGroup('t1', 'h', { ifRevision: 0 }), conflict)
  await t.rejects(pc.deleteGroup('t1', 'g', { ifRevision: 2 }), conflict)
  await t.rejects(pc.addPermission('t1', 'g', 'a', { ifRevision: 0 }), conflict)
  await t.rejects(pc.removePermission('t1', 'g', 'a', { ifRevision: 0 }), conflict)
  await t.rejects(pc.assignUser('t1', 'g', 'u', { ifRevision: 0 }), conflict)
  await t.rejects(pc.unassignUser('t1', 'g', 'u', { ifRevision: 0 }), conflict)
  await t.rejects(pc.batch('t1', [{ op: 'create-group', group: 'h' }], { ifRevision: 0 }), conflict)
  await t.rejects(pc.createGroup('t1', 'h', { ifRevision: 1.5 }), { code: 'FST_POLICY_CACHE_INVALID_INPUT', statusCode: 400 })
  await t.rejects(pc.createGroup('t1', 'h', { ifRevision: -1 }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  t.equal(await pc.revision('t1'), 1)
  t.match(await pc.assignUser('t1', 'g', 'u', { ifRevision: 1 }), { revision: 2, changed: true })
  t.same(pc.stats().writes, 2)
})

test('of concurrent writes conditional on one revision, exactly one wins', async (t) => {
  const app = await buildApp(t)
  await app.policyCache.createGroup('t1', 'g')
  const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => app.policyCache.assignUser('t1', 'g', `u${i}`, { ifRevision: 1 })))
  t.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1)
  t.equal(outcomes.filter((o) => o.status === 'rejected' && (o.reason as { code: string }).code === 'FST_POLICY_CACHE_REVISION_CONFLICT').length, 9)
  t.equal((await app.policyCache.tenant('t1')).groups[0].users.length, 1)
})
