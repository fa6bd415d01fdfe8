/**
 * A database failure in the middle of a write (the transaction throws after the mutation and the
 * revision bump, before its changelog row): a coded 503, nothing committed, nothing cached, nothing
 * notified, and no revision consumed.
 */
import { sql } from 'kysely'
import { test } from 'tap'
import { createSqliteDb } from '../lib/store/index.js'
import { buildApp, get, post, recordingPeer, SECRET } from './helpers/app.js'
import { InstrumentedStore } from './helpers/instrumented-store.js'

test('a transaction that throws mid-write: coded 503, rolled back, not cached, not notified', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  const peer = await recordingPeer(t)
  const app = await buildApp(t, { db, peers: [peer.url], webhookSecret: SECRET, ackTimeoutMs: 5000 })

  t.match((await post(app, '/create-group', { tenant: 't1', group: 'g' })).body, { revision: 1, peers: { acked: 1, total: 1 } })
  t.match((await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read')).body, { allowed: false, revision: 1 }, 'cached at 1')

  // The changelog insert is the transaction's last statement: the mutation and the bump ran before it.
  await sql`CREATE TRIGGER fail_changelog BEFORE INSERT ON policy_changelog BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END`.execute(db)
  const failed = await post(app, '/add-permission', { tenant: 't1', group: 'g', permission: 'doc:read' })
  t.equal(failed.status, 503)
  t.equal(failed.body.code, 'FST_POLICY_CACHE_STORE_UNAVAILABLE')
  t.equal(failed.body.message, 'The policy database failed or did not answer: a write (the cause is in the server log)', 'the driver\'s message stays out of the body')
  const direct = await app.policyCache.assignUser('t1', 'g', 'alice').then(() => null, (err: Error) => err)
  t.match(direct, { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE', statusCode: 503, cause: { message: /simulated disk failure/ } }, 'the decorator: same error, cause attached')

  const { rows: [tenantRow] } = await sql<{ revision: number }>`SELECT revision FROM policy_tenants WHERE tenant = 't1'`.execute(db)
  t.equal(Number(tenantRow.revision), 1, 'the revision bump was rolled back')
  const { rows: grants } = await sql`SELECT * FROM policy_grants`.execute(db)
  t.same(grants, [], 'the mutation was rolled back')
  t.same((await get(app, '/tenants/t1')).body, { tenant: 't1', revision: 1, groups: [{ name: 'g', permissions: [], users: [], includes: [] }] }, 'nothing cached')
  t.match((await get(app, '/check-access?tenant=t1&user=alice&permission=doc:read')).body, { allowed: false, revision: 1 })
  t.equal(peer.notices.length, 1, 'nothing notified')

  await sql`DROP TRIGGER fail_changelog`.execute(db)
  t.match((await post(app, '/add-permission', { tenant: 't1', group: 'g', permission: 'doc:read' })).body, { revision: 2, changed: true }, 'no revision was consumed')
  t.same(peer.notices.map((notice) => notice.changes.map((c) => c.revision)), [[1], [2]], 'the peer saw 1 then 2, nothing between')
})

test('a custom store whose write throws: coded 503, nothing cached, nothing notified', async (t) => {
  const store = new InstrumentedStore()
  const peer = await recordingPeer(t)
  const app = await buildApp(t, { db: store, peers: [peer.url], webhookSecret: SECRET, ackTimeoutMs: 5000 })
  await app.policyCache.createGroup('t1', 'g')
  const before = app.policyCache.stats()
  store.failing = new Error('connection reset')
  const failed = await post(app, '/create-group', { tenant: 't1', group: 'h' })
  t.equal(failed.status, 503)
  t.equal(failed.body.code, 'FST_POLICY_CACHE_STORE_UNAVAILABLE')
  store.failing = undefined
  t.same(app.policyCache.stats(), before, 'the cache was not touched')
  t.match((await get(app, '/tenants/t1')).body, { revision: 1, groups: [{ name: 'g' }] })
  t.equal(peer.notices.length, 1, 'only the successful write was notified')
})
