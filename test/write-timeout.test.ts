/**
 * `writeTimeoutMs`: a write whose commit does not come back in time answers a coded 503 saying its
 * outcome is unknown, instead of hanging; if it commits later it is applied and sent to the peers
 * then, so no instance misses it.
 */
import Fastify from 'fastify'
import type { Kysely } from 'kysely'
import { test } from 'tap'
import type { Notice } from '../lib/broadcast/notice.js'
import policyCache from '../lib/plugin.js'
import { buildApp, post, SECRET } from './helpers/app.js'
import { postgresDb, POSTGRES_URL, scratchPrefix, unreachable, withPort } from './helpers/databases.js'
import { InstrumentedStore } from './helpers/instrumented-store.js'
import { startProxy } from './helpers/proxy.js'

const outcomeUnknown = (ms: number) => new RegExp(`did not finish the write to tenant "t1" within ${ms} ms \\(writeTimeoutMs\\): its outcome is unknown`)
const OUTCOME_UNKNOWN = outcomeUnknown(100)

test('a commit that does not come back in time: 503 outcome unknown; committed later, it is applied and sent then', async (t) => {
  const notices: Notice[] = []
  let noticed!: () => void
  const arrived = new Promise<void>((resolve) => { noticed = resolve })
  const peer = Fastify()
  peer.post('/webhook/refresh', async (request) => {
    notices.push(request.body as Notice)
    noticed()
    return { serverId: 'peer', revisions: {} }
  })
  await peer.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => peer.close())

  const store = new InstrumentedStore()
  const app = await buildApp(t, {
    db: store,
    writeTimeoutMs: 100,
    peers: [`http://127.0.0.1:${(peer.server.address() as { port: number }).port}`],
    webhookSecret: SECRET
  })
  await app.policyCache.warm(['t1'])
  // The store commits, then its answer is held: the reply is lost on its way back, for now.
  const release = store.hold('write')
  const res = await post(app, '/create-group', { tenant: 't1', group: 'g' })
  t.equal(res.status, 503)
  t.equal(res.body.code, 'FST_POLICY_CACHE_WRITE_OUTCOME_UNKNOWN')
  t.match(res.body.message, OUTCOME_UNKNOWN)
  t.equal(app.policyCache.checkSync('t1', 'alice', 'x'), false)
  t.equal(await app.policyCache.revision('t1'), 0, 'not applied while unknown')
  t.same(notices, [], 'not sent while unknown')

  release()
  await arrived
  const digest = notices[0].changes[0].digest
  t.match(digest, /^[0-9a-f]{32}$/, 'with the tenant\'s digest after it')
  t.same(notices[0].changes, [{ tenant: 't1', revision: 1, digest, operation: 'create-group', group: 'g' }], 'sent once committed')
  t.equal(await app.policyCache.revision('t1'), 1, 'applied here')
  t.equal(store.calls.snapshot, 1, 'applied from the write itself, no reload')
})

test('the decorator: same error', async (t) => {
  const store = new InstrumentedStore()
  const app = await buildApp(t, { db: store, writeTimeoutMs: 100 })
  const release = store.hold('write')
  const err = await app.policyCache.createGroup('t1', 'g').then(() => null, (e: unknown) => e)
  t.match(err, { code: 'FST_POLICY_CACHE_WRITE_OUTCOME_UNKNOWN', statusCode: 503, message: OUTCOME_UNKNOWN })
  release()
})

test('PostgreSQL blackholed: a write answers 503 outcome unknown instead of hanging', async (t) => {
  const direct = await postgresDb()
  if (direct === undefined) return unreachable(t, 'PostgreSQL', POSTGRES_URL)
  const tablePrefix = scratchPrefix(t, direct)
  const proxy = await startProxy(t, Number(new URL(POSTGRES_URL).port))
  const db = await postgresDb(withPort(POSTGRES_URL, Number(new URL(proxy.url).port))) as Kysely<any>
  const app = Fastify()
  t.teardown(async () => {
    // Held bytes flow again, so the pool's connection finishes its query and closes.
    proxy.hold(false)
    await app.close()
    await db.destroy()
  })
  // Registration migrated through the proxy: the pool's connection is open.
  await app.register(policyCache, { db, tablePrefix, syncIntervalMs: 0, writeTimeoutMs: 500 })

  proxy.hold(true)
  const res = await post(app, '/create-group', { tenant: 't1', group: 'g' })
  t.equal(res.status, 503)
  t.equal(res.body.code, 'FST_POLICY_CACHE_WRITE_OUTCOME_UNKNOWN')
  t.match(res.body.message, outcomeUnknown(500))
})
