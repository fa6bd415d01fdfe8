/**
 * Graceful shutdown (`policyCache.drain()`, and `app.close()` which begins with it): new writes are
 * refused with a coded 503 and write nothing, `/health` answers 503 `closing`, the writes in flight
 * finish — committed, applied, sent to the peers. (Leaving the membership: test/membership/suite.ts.)
 */
import Fastify from 'fastify'
import { test } from 'tap'
import policyCache from '../lib/plugin.js'
import { buildApp, get, post, recordingPeer, SECRET } from './helpers/app.js'
import { InstrumentedStore } from './helpers/instrumented-store.js'

test('drain: the write in flight finishes and is sent; later writes get a coded 503 and write nothing; /health says closing', async (t) => {
  const store = new InstrumentedStore()
  const peer = await recordingPeer(t)
  const app = await buildApp(t, { db: store, peers: [peer.url], webhookSecret: SECRET })
  t.equal(app.policyCache.closing, false, 'not closing before drain')
  t.equal((await get(app, '/health')).status, 200)
  await app.policyCache.createGroup('t1', 'g')

  // A write that has reached the database and not answered yet.
  const release = store.hold('write')
  const inFlight = post(app, '/assign-user', { tenant: 't1', group: 'g', user: 'alice' })
  while (store.calls.write < 2) await new Promise((resolve) => setImmediate(resolve))

  let drained = false
  const draining = app.policyCache.drain().then(() => { drained = true })
  t.equal(app.policyCache.closing, true, 'closing as soon as drain is called')
  t.equal(app.policyCache.drain(), app.policyCache.drain(), 'drain is idempotent: one promise')

  const health = await get(app, '/health')
  t.equal(health.status, 503, '/health answers 503 while closing')
  t.equal(health.body.status, 'closing')
  t.equal(health.body.db, 'ok', 'the database is still reported')

  const refused = await post(app, '/assign-user', { tenant: 't1', group: 'g', user: 'bob' })
  t.equal(refused.status, 503, 'a new write through the route is refused')
  t.equal(refused.body.code, 'FST_POLICY_CACHE_CLOSING')
  await t.rejects(app.policyCache.createGroup('t1', 'h'), { code: 'FST_POLICY_CACHE_CLOSING', statusCode: 503 }, 'and through the decorator')
  t.equal(store.calls.write, 2, 'the refused writes never reached the store')
  t.equal(drained, false, 'drain waits for the write in flight')

  release()
  const answered = await inFlight
  t.equal(answered.status, 200, 'the write in flight answers')
  t.equal(answered.body.revision, 2)
  t.same(answered.body.peers, { acked: 1, total: 1 }, 'and its notice was delivered before it answered')
  await draining
  t.equal(drained, true)
  t.ok(peer.notices.some((notice) => notice.changes.some((change) => change.tenant === 't1' && change.revision === 2)), 'the peer got the in-flight write')

  // Reads and checks are still served while closing; the refused writes left no trace.
  t.equal(await app.policyCache.check('t1', 'alice', 'x:y'), false)
  const view = await app.policyCache.tenant('t1')
  t.equal(view.revision, 2, 'no revision beyond the in-flight write')
  t.same(view.groups.map((group) => group.name), ['g'], 'group h was not created')
  t.same((await store.snapshot('t1')).revision, 2, 'nor in the database')
})

test('drain resolves, never rejects, when the write in flight fails', async (t) => {
  const store = new InstrumentedStore()
  const app = await buildApp(t, { db: store })
  const pending: Array<(err: Error) => void> = []
  store.write = () => new Promise((_resolve, reject) => { pending.push(reject) })
  const inFlight = app.policyCache.createGroup('t1', 'g')
  while (pending.length === 0) await new Promise((resolve) => setImmediate(resolve))
  let drained = false
  const draining = app.policyCache.drain().then(() => { drained = true })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(drained, false, 'waiting for the write')
  pending[0](new Error('disk full'))
  await t.rejects(inFlight, { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' }, 'the write answers its 503')
  await t.resolves(draining)
  t.equal(drained, true)
})

test('app.close() drains first: a write in flight when the app closes still commits, is applied and answers', async (t) => {
  const store = new InstrumentedStore()
  const app = Fastify()
  await app.register(policyCache, { db: store, syncIntervalMs: 0 })
  await app.ready()
  const release = store.hold('write')
  const inFlight = app.policyCache.createGroup('t1', 'g')
  while (store.calls.write < 1) await new Promise((resolve) => setImmediate(resolve))
  let closed = false
  const closing = app.close().then(() => { closed = true })
  // close() runs preClose (the drain) before it tears the broadcaster and the store down.
  while (!app.policyCache.closing) await new Promise((resolve) => setImmediate(resolve))
  await t.rejects(app.policyCache.createGroup('t1', 'h'), { code: 'FST_POLICY_CACHE_CLOSING' })
  t.equal(closed, false, 'close waits for the write in flight')
  release()
  t.match(await inFlight, { revision: 1, changed: true })
  await closing
  t.equal((await store.snapshot('t1')).revision, 1)
})
