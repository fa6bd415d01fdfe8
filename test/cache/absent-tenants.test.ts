/**
 * Tenants never written (revision 0) do not take room in the `maxTenants` LRU: a flood of requests
 * for tenants that do not exist leaves the real ones cached. They still answer correctly (denied,
 * revision 0), are remembered in a small bounded set of their own, and a later write to one is seen.
 */
import { test } from 'tap'
import { MAX_ABSENT_TENANTS, TenantCache } from '../../lib/cache/tenant-cache.js'
import { buildApp, get } from '../helpers/app.js'
import { InstrumentedStore } from '../helpers/instrumented-store.js'

test('a junk-tenant flood leaves the hot tenant cached', async (t) => {
  const store = new InstrumentedStore()
  const app = await buildApp(t, { db: store, maxTenants: 10 })
  await app.policyCache.createGroup('hot', 'g')
  await app.policyCache.addPermission('hot', 'g', 'doc:read')
  await app.policyCache.assignUser('hot', 'g', 'alice')
  t.equal(await app.policyCache.check('hot', 'alice', 'doc:read'), true)
  const loads = store.calls.snapshot

  for (let i = 0; i < 200; i++) {
    const res = await get(app, `/check-access?tenant=junk-${i}&user=alice&permission=doc:read`)
    if (res.status !== 200 || res.body.allowed !== false || res.body.revision !== 0) t.fail(`junk-${i}: ${JSON.stringify(res.body)}`)
  }
  t.equal(store.calls.snapshot, loads + 200, 'each junk tenant was looked up once')
  t.equal(app.policyCache.checkSync('hot', 'alice', 'doc:read'), true, 'the hot tenant is still in memory')
  t.equal(await app.policyCache.check('hot', 'alice', 'doc:read'), true)
  t.equal(store.calls.snapshot, loads + 200, 'and was not loaded again')
  t.match(app.policyCache.stats(), { tenants: 1, evictions: 0 })

  const again = store.calls.snapshot
  t.same((await get(app, '/check-access?tenant=junk-199&user=alice&permission=doc:read')).body, { allowed: false, revision: 0 })
  t.equal(store.calls.snapshot, again, 'a recent junk tenant is answered without a query')
})

test('a never-written tenant is seen once written: here, by a peer (notice), or found by the sync', async (t) => {
  const store = new InstrumentedStore()
  const app = await buildApp(t, { db: store })
  for (const tenant of ['own', 'peer', 'synced']) t.same(await app.policyCache.decide(tenant, 'alice', 'doc:read'), { allowed: false, revision: 0 })

  await app.policyCache.createGroup('own', 'g')
  await app.policyCache.addPermission('own', 'g', 'doc:read')
  await app.policyCache.assignUser('own', 'g', 'alice')
  t.same(await app.policyCache.decide('own', 'alice', 'doc:read'), { allowed: true, revision: 3 }, 'its own writes')

  for (const tenant of ['peer', 'synced']) {
    await store.write(tenant, { op: 'create-group', group: 'g' }, 'elsewhere')
    await store.write(tenant, { op: 'assign-user', group: 'g', user: 'alice' }, 'elsewhere')
  }
  const engine = app.policyCache as unknown as { noticed: (entries: unknown[]) => Promise<Record<string, number | null>>, sync: () => Promise<string[]> }
  t.same(await engine.noticed([{ tenant: 'peer', revision: 2, carried: undefined }]), { peer: 2 }, 'a peer\'s notice: caught up')
  t.same((await app.policyCache.user('peer', 'alice')), { tenant: 'peer', user: 'alice', revision: 2, groups: ['g'], permissions: [], grants: [] })
  t.same(await engine.sync(), { behind: ['synced'], repaired: [] }, 'the sync polls never-written tenants too')
  t.same((await app.policyCache.user('synced', 'alice')), { tenant: 'synced', user: 'alice', revision: 2, groups: ['g'], permissions: [], grants: [] })
  t.match(app.policyCache.stats(), { tenants: 3 }, 'all three now in the LRU of real tenants')
})

test('never-written tenants are remembered in a bounded set', async (t) => {
  const store = new InstrumentedStore()
  const cache = new TenantCache({ store, maxTenants: 10 })
  for (let i = 0; i <= MAX_ABSENT_TENANTS; i++) await cache.get(`junk-${i}`)
  t.equal(store.calls.snapshot, MAX_ABSENT_TENANTS + 1)
  await cache.get(`junk-${MAX_ABSENT_TENANTS}`)
  t.equal(store.calls.snapshot, MAX_ABSENT_TENANTS + 1, 'the newest is remembered')
  await cache.get('junk-0')
  t.equal(store.calls.snapshot, MAX_ABSENT_TENANTS + 2, 'the oldest was forgotten: looked up again')
  t.match(cache.stats(), { tenants: 0, evictions: 0 })
})
