/**
 * `/health` while writes fail on a database that still answers reads (a full disk): 200 with
 * `status: 'degraded'` and `writes: 'failing'`, until a write succeeds or the failure is older than
 * WRITE_FAILURE_WINDOW_MS. A client's own mistake (a 404 group) is not a failing write.
 */
import { test } from 'tap'
import type { Change } from '../../lib/model.js'
import { PolicyCache, WRITE_FAILURE_WINDOW_MS } from '../../lib/policy-cache.js'
import { buildApp, get, post } from '../helpers/app.js'
import { InstrumentedStore } from '../helpers/instrumented-store.js'

/** Reads work; writes fail while `diskFull`. */
class DiskFullStore extends InstrumentedStore {
  diskFull = false
  override write (tenant: string, change: Change, origin: string) {
    if (this.diskFull) return Promise.reject(Object.assign(new Error('SQLITE_FULL: database or disk is full'), { code: 'SQLITE_FULL' }))
    return super.write(tenant, change, origin)
  }
}

test('/health turns degraded while writes fail, ok again once one succeeds', async (t) => {
  const store = new DiskFullStore()
  const app = await buildApp(t, { db: store })
  await app.policyCache.createGroup('t1', 'g')
  t.match((await get(app, '/health')).body, { status: 'ok', db: 'ok', writes: 'ok' })

  t.equal((await post(app, '/assign-user', { tenant: 't1', group: 'nope', user: 'alice' })).status, 404)
  t.match((await get(app, '/health')).body, { status: 'ok', writes: 'ok' }, 'a client error is not a failing write')

  store.diskFull = true
  t.equal((await post(app, '/assign-user', { tenant: 't1', group: 'g', user: 'alice' })).status, 503)
  const degraded = await get(app, '/health')
  t.equal(degraded.status, 200, 'reads still work: not taken out of rotation')
  t.match(degraded.body, { status: 'degraded', db: 'ok', writes: 'failing' })

  store.diskFull = false
  t.equal((await post(app, '/assign-user', { tenant: 't1', group: 'g', user: 'alice' })).status, 200)
  t.match((await get(app, '/health')).body, { status: 'ok', db: 'ok', writes: 'ok' }, 'a write succeeded')
})

test('a write failure older than the window no longer degrades', async (t) => {
  const store = new DiskFullStore()
  let now = 1_000_000
  const engine = new PolicyCache({
    store,
    notifier: { notify: async () => ({ acked: 0, total: 0 }), status: () => [] },
    serverId: 'a',
    maxTenants: 10,
    catchUpTimeoutMs: 1000,
    log: { warn: () => {} },
    now: () => now
  })
  t.equal(engine.writesFailing(), false)
  store.diskFull = true
  await t.rejects(engine.createGroup('t1', 'g'), { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' })
  t.equal(engine.writesFailing(), true)
  now += WRITE_FAILURE_WINDOW_MS - 1
  t.equal(engine.writesFailing(), true, 'within the window')
  now += 1
  t.equal(engine.writesFailing(), false, 'past it')
})
