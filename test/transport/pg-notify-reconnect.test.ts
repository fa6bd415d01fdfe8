/**
 * pg-notify: the listening connection killed on the server (`pg_terminate_backend`). The instance
 * notices at once, re-establishes it with backoff, and resyncs every cached tenant on the new
 * subscription: a write committed while it was not listening (its NOTIFY lost for this instance) is
 * visible shortly after the resubscribe — with the periodic sync off, so nothing else could heal it.
 * Then every instance's listening connection cut mid-load (through a TCP proxy: the writes, on
 * their own pools, keep reaching the database) and restored: the shared scenario of
 * test/helpers/transport-scenarios.ts.
 */
import { sql } from 'kysely'
import t from 'tap'
import { KyselyPolicyStore } from '../../lib/store/index.js'
import { dropPrefixed, POSTGRES_URL, postgresDb, randomPrefix, unreachable, withPort } from '../helpers/databases.js'
import { startNode, startNodes, until } from '../helpers/pg-notify.js'
import { startProxy } from '../helpers/proxy.js'
import { reconnectUnderLoad } from '../helpers/transport-scenarios.js'

const admin = await postgresDb()
if (admin === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  t.teardown(() => admin.destroy())

  t.test('a killed listener reconnects and resyncs: the writes made while it was down are visible', async (t) => {
    // A reconnect delay of at least 2 s: the writes below commit while b is not listening.
    const [a, b] = await startNodes(t, admin, randomPrefix(), 2, { reconnect: { minDelayMs: 2000, maxDelayMs: 2500 } })
    await a.app.policyCache.createGroup('t1', 'readers')
    await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
    await until('b is at revision 2', async () => { await b.app.policyCache.warm(['t1']); return await b.app.policyCache.revision('t1') === 2 })
    // Both notices handled (the counter moves once the engine is done with one).
    const before = await until('b handled both notices', async () => { const s = await b.transport(); return s.received === 2 && s })
    t.equal(before.subscriptions, 1)

    const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity where application_name = ${'policy-cache listen n2'}`.execute(admin)
    t.equal(rows.length, 1, 'one listening session for b, named in pg_stat_activity')
    await sql`select pg_terminate_backend(${rows[0].pid})`.execute(admin)

    const down = await until('b noticed the loss', async () => { const s = await b.transport(); return s.state === 'down' && s })
    t.type(down.lastError, 'string')
    t.equal((await b.app.inject({ url: '/health' })).json().status, 'degraded', '/health is degraded while the listener is down')

    // Writes keep committing meanwhile: the writer does not depend on anyone's listener.
    const users = ['alice', ...Array.from({ length: 9 }, (_, i) => `user${i}`)]
    for (const user of users) t.equal((await a.app.policyCache.assignUser('t1', 'readers', user)).changed, true)
    t.equal(b.app.policyCache.checkSync('t1', 'alice', 'documents:read'), false, 'b missed the notices')

    const deltaBefore = b.app.policyCache.stats().deltaCatchUps
    const up = await until('b listens again', async () => { const s = await b.transport(); return s.subscriptions === 2 && s.state === 'up' && s }, 10000)
    const resubscribedAt = Date.now()
    // The resync runs as the subscription is made (~10 ms here); the bound only ends a broken run.
    await until('b sees the writes made while it was down', () => b.app.policyCache.checkSync('t1', 'alice', 'documents:read'), 5000)
    t.comment(`visible ${Date.now() - resubscribedAt} ms after the resubscribe was observed`)
    t.equal(await b.app.policyCache.revision('t1'), 2 + users.length, 'every one of them')
    for (const user of users) t.equal(b.app.policyCache.checkSync('t1', user, 'documents:read'), true, `${user} allowed on b`)
    t.equal(up.received, before.received, 'not through a notice: the NOTIFY was lost for b')
    t.ok(b.app.policyCache.stats().deltaCatchUps > deltaBefore, 'caught up from the changelog by the resync')
    t.equal((await b.app.inject({ url: '/health' })).json().status, 'ok')

    // And the new subscription carries notices again.
    await a.app.policyCache.assignUser('t1', 'readers', 'bob')
    await until('b allows bob through the new subscription', () => b.app.policyCache.checkSync('t1', 'bob', 'documents:read'))
  })

  t.test('every listener cut mid-load and restored: writes keep committing, every instance resyncs on its resubscribe', async (t) => {
    const proxy = await startProxy(t, Number(new URL(POSTGRES_URL).port || 5432))
    const prefix = randomPrefix()
    const nodes = await startNodes(t, admin, prefix, 3, {
      connection: withPort(POSTGRES_URL, Number(new URL(proxy.url).port)),
      reconnect: { minDelayMs: 50, maxDelayMs: 200 }
    })
    await reconnectUnderLoad(t, {
      nodes,
      outside: new KyselyPolicyStore({ db: admin, tablePrefix: prefix }),
      cut: async () => { proxy.setUp(false) },
      restore: async () => { proxy.setUp(true) }
    })
  })

  t.test('/metrics reports the subscription and the messages', async (t) => {
    const prefix = randomPrefix()
    t.teardown(() => dropPrefixed(admin, prefix))
    const a = await startNode(t, prefix, 'm1', {}, { metrics: true })
    await a.app.policyCache.createGroup('t1', 'g')
    await until('a dropped its own message', async () => (await a.transport()).dropped === 1)
    const text = (await a.app.inject({ url: '/metrics' })).body
    t.match(text, /^policy_cache_transport_up\{transport="pg-notify"\} 1$/m)
    t.match(text, /^policy_cache_transport_subscriptions_total\{transport="pg-notify"\} 1$/m)
    t.match(text, /^policy_cache_transport_messages_total\{transport="pg-notify",outcome="published"\} 1$/m)
    t.match(text, /^policy_cache_transport_messages_total\{transport="pg-notify",outcome="dropped"\} 1$/m)
  })
}
