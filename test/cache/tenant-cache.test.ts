import { mock } from 'node:test'
import { setImmediate as turn } from 'node:timers/promises'
import { test } from 'tap'
import { TenantCache } from '../../lib/cache/tenant-cache.js'
import { EMPTY_DIGEST } from '../../lib/digest.js'
import type { Change } from '../../lib/model.js'
import { InstrumentedStore } from '../helpers/instrumented-store.js'

async function seeded (retention?: number) {
  const store = new InstrumentedStore({ retention })
  await store.write('t1', { op: 'create-group', group: 'g' }, 'test')
  await store.write('t1', { op: 'add-permission', group: 'g', permission: 'doc:read' }, 'test')
  return store
}

/** The notice of a peer's write `write`, carrying its change (at the write's revision, with its digest). */
function carrying (cache: TenantCache, write: { revision: number, digest: string }, change: Change): Promise<number | null> {
  return cache.noticed('t1', write.revision, write.digest, { ...change, revision: write.revision })
}

test('concurrent first uses load a tenant once', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  const release = store.hold('snapshot')
  const loads = Array.from({ length: 10 }, () => cache.get('t1'))
  release()
  const states = await Promise.all(loads)
  t.equal(store.calls.snapshot, 1)
  t.ok(states.every((s) => s === states[0]))
  t.equal(states[0].revision, 2)
})

test('catching up one change applies the delta, no reload', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  t.equal(await cache.noticed('t1', 3), 3)
  t.equal(store.calls.snapshot, 1, 'only the initial load read a snapshot')
  t.ok(cache.peek('t1')!.check('alice', 'doc:read'))
  t.match(cache.stats(), { deltaCatchUps: 1, fullReloads: 0 })
})

test('a burst of notices during a catch-up costs one trailing run and loses nothing', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const release = store.hold('changesSince')
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'u0' }, 'peer')
  const first = cache.noticed('t1', 3)
  const burst: Array<Promise<number | null>> = []
  for (let i = 1; i <= 20; i++) {
    await store.write('t1', { op: 'assign-user', group: 'g', user: `u${i}` }, 'peer')
    burst.push(cache.noticed('t1', 3 + i))
  }
  release()
  await Promise.all([first, ...burst])
  t.equal(store.calls.changesSince, 2, 'one run plus exactly one trailing run')
  t.equal(cache.peek('t1')!.revision, 23, 'the last notice is not lost')
  t.ok(cache.peek('t1')!.check('u20', 'doc:read'))
})

test('a log that no longer reaches back means one full reload', async (t) => {
  const store = await seeded(2)
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  for (const user of ['a', 'b', 'c', 'd']) await store.write('t1', { op: 'assign-user', group: 'g', user }, 'peer')
  await cache.catchUp('t1')
  t.equal(cache.peek('t1')!.revision, 6)
  t.ok(cache.peek('t1')!.check('a', 'doc:read'))
  t.match(cache.stats(), { fullReloads: 1, deltaCatchUps: 0 })
})

test('a revision never goes backwards', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  t.equal(await cache.noticed('t1', 1), 2, 'an old notice does nothing')
  t.equal(store.calls.changesSince, 0)
  // A reload that read an older snapshot than what is cached must not win.
  const release = store.hold('snapshot')
  const reload = cache.reload('t1')
  const { digest } = await store.write('t1', { op: 'assign-user', group: 'g', user: 'late' }, 'peer')
  await cache.applyOwn('t1', { revision: 3, op: 'assign-user', group: 'g', user: 'late' }, digest)
  t.equal(cache.peek('t1')!.revision, 3)
  release()
  t.equal(await reload, 3, 'the snapshot read at revision 2 did not move it back')
  t.ok(cache.peek('t1')!.check('late', 'doc:read'))
})

test('an uncached tenant is left to load lazily', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  t.equal(await cache.noticed('t1', 2), null)
  t.equal(store.calls.snapshot, 0)
})

test('maxTenants bounds memory; evictions are counted', async (t) => {
  const store = await seeded()
  for (const tenant of ['a', 'b', 'c']) await store.write(tenant, { op: 'create-group', group: 'g' }, 'test')
  const cache = new TenantCache({ store, maxTenants: 2 })
  await cache.get('a')
  await cache.get('b')
  await cache.get('c')
  t.same(cache.tenants().sort(), ['b', 'c'])
  t.match(cache.stats(), { tenants: 2, evictions: 1, loads: 3 })
})

test('sync polls all cached tenants in one query and catches up those behind', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  await cache.get('t2')
  await store.write('t2', { op: 'create-group', group: 'x' }, 'peer')
  t.same(await cache.sync(), { behind: ['t2'], repaired: [] })
  t.equal(store.calls.revisions, 1)
  t.equal(cache.peek('t2')!.revision, 1)
  t.same(await cache.sync(), { behind: [], repaired: [] }, 'nothing behind the second time')
})

test('a catch-up racing a full reload is not lost on the state the reload replaced', async (t) => {
  const store = new InstrumentedStore()
  await store.write('t1', { op: 'create-group', group: 'g' }, 'test')
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  await store.write('t1', { op: 'add-permission', group: 'g', permission: 'doc:read' }, 'peer')
  const releaseSnapshot = store.hold('snapshot')
  const reload = cache.reload('t1') // reads revision 2, answers late
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  const releaseChanges = store.hold('changesSince')
  const noticed = cache.noticed('t1', 3) // reads the changes after 1 (2 and 3), answers late
  releaseSnapshot()
  t.equal(await reload, 2, 'the reload swapped in a new state at 2')
  releaseChanges()
  t.equal(await noticed, 3, 'the catch-up reached 3 on the state now cached')
  t.equal(cache.peek('t1')!.revision, 3)
  t.ok(cache.peek('t1')!.check('alice', 'doc:read'))
})

test('a carried change one revision ahead is applied without reading the database', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const { revision, digest } = await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  t.equal(await cache.noticed('t1', revision, digest, { op: 'assign-user', group: 'g', user: 'alice', revision }), 3)
  t.equal(store.calls.changesSince, 0, 'no changelog query')
  t.equal(store.calls.snapshot, 1, 'only the initial load')
  t.ok(cache.peek('t1')!.check('alice', 'doc:read'))
  t.match(cache.stats(), { carriedCatchUps: 1, deltaCatchUps: 0, fullReloads: 0 })
})

test('a carried change past a gap is not applied: the changelog fills the gap', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'bob' }, 'peer')
  const { revision, digest } = await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  t.equal(await cache.noticed('t1', revision, digest, { op: 'assign-user', group: 'g', user: 'alice', revision }), 4)
  t.equal(store.calls.changesSince, 1)
  t.ok(cache.peek('t1')!.check('bob', 'doc:read'), 'the skipped revision is applied too')
  t.ok(cache.peek('t1')!.check('alice', 'doc:read'))
  t.match(cache.stats(), { carriedCatchUps: 0, deltaCatchUps: 1 })
})

test('a carried change does not load an uncached tenant', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  t.equal(await cache.noticed('t1', 3, EMPTY_DIGEST, { op: 'create-group', group: 'h', revision: 3 }), null)
  t.equal(cache.peek('t1'), undefined)
  t.equal(store.calls.snapshot + store.calls.changesSince, 0)
})

test('notices carrying changes during a catch-up share one trailing run that applies the latest', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  // A sync-driven catch-up to revision 3 is running (it reads the changelog) when the notices arrive.
  const a = await store.write('t1', { op: 'assign-user', group: 'g', user: 'a' }, 'peer')
  const release = store.hold('changesSince')
  const running = cache.catchUp('t1')
  const b = await store.write('t1', { op: 'assign-user', group: 'g', user: 'b' }, 'peer')
  const notices = [
    carrying(cache, b, { op: 'assign-user', group: 'g', user: 'b' }),
    carrying(cache, a, { op: 'assign-user', group: 'g', user: 'a' })
  ]
  release()
  await running
  t.same(await Promise.all(notices), [4, 4])
  t.equal(store.calls.changesSince, 1, 'the running catch-up read the log; the trailing run did not')
  t.ok(cache.peek('t1')!.check('a', 'doc:read'))
  t.ok(cache.peek('t1')!.check('b', 'doc:read'))
  t.match(cache.stats(), { carriedCatchUps: 1, deltaCatchUps: 1 })
})

test('a trailing run that a sync also asked for reads the changelog', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const release = store.hold('changesSince')
  const running = cache.catchUp('t1')
  const a = await store.write('t1', { op: 'assign-user', group: 'g', user: 'a' }, 'peer')
  const notice = carrying(cache, a, { op: 'assign-user', group: 'g', user: 'a' })
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'b' }, 'peer')
  const sync = cache.sync()
  release()
  await Promise.all([running, notice, sync])
  t.equal(cache.peek('t1')!.revision, 4, 'the store\'s current revision, past the carried one')
  t.ok(cache.peek('t1')!.check('b', 'doc:read'))
  t.match(cache.stats(), { carriedCatchUps: 0 })
})

/**
 * A forged notice: the change at the cached revision + 1, carried with the digest the cache would
 * have after it (what a holder of the webhook secret can compute), so the cache applies it.
 */
async function forge (cache: TenantCache, change: Change): Promise<number> {
  const state = cache.peek('t1')!
  const revision = state.revision + 1
  await cache.noticed('t1', revision, state.digestAfter(change), { ...change, revision })
  return revision
}

/** A cached tenant at revision 2 whose cache a forged notice moved to revision 3 (mallory in g); the database is at 2. */
async function forged (options: { repairSpacingMs?: number } = {}) {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10, ...options })
  await cache.get('t1')
  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' })
  return { store, cache }
}

test('a forged carried change is applied, then repaired by the real notice of its revision, never acknowledged as it', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const revision = await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' })
  t.ok(cache.peek('t1')!.check('mallory', 'doc:read'), 'applied: the digest matched what the notice said')
  t.equal(cache.peek('t1')!.verified, false, 'a peer\'s word, not the database\'s')

  const real = await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  t.equal(real.revision, revision, 'the database\'s write at the forged revision')
  t.equal(await carrying(cache, real, { op: 'assign-user', group: 'g', user: 'alice' }), revision,
    'answered only once it holds the database\'s contents')
  const state = cache.peek('t1')!
  t.equal(state.digest, real.digest)
  t.ok(state.check('alice', 'doc:read'))
  t.notOk(state.check('mallory', 'doc:read'), 'the forged membership is gone')
  t.match(cache.stats(), { repairs: 1, carriedCatchUps: 1 })
})

test('a carried change whose result does not have the notice\'s digest is not applied: the changelog decides', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const real = await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  t.equal(await carrying(cache, real, { op: 'assign-user', group: 'g', user: 'mallory' }), 3)
  t.equal(store.calls.changesSince, 1)
  t.ok(cache.peek('t1')!.check('alice', 'doc:read'))
  t.notOk(cache.peek('t1')!.check('mallory', 'doc:read'))
  t.match(cache.stats(), { carriedCatchUps: 0, deltaCatchUps: 1, repairs: 0 })
})

test('a notice with another digest for contents read from the database changes nothing and reads nothing', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const snapshots = store.calls.snapshot
  t.equal(await cache.noticed('t1', 2, 'ff'.repeat(16)), 2)
  t.equal(store.calls.snapshot + store.calls.changesSince, snapshots, 'the notice is wrong, not the cache')
  t.match(cache.stats(), { repairs: 0 })
})

test('sync repairs contents that differ from the database at the same revision, and a cache ahead of it', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  await forge(cache, { op: 'delete-group', group: 'g' })
  t.notOk(cache.peek('t1')!.check('x', 'doc:read'))
  t.same(await cache.sync(), { behind: [], repaired: ['t1'] }, 'ahead of the database (revision 3 of 2)')
  t.equal(cache.peek('t1')!.revision, 2, 'what the database holds, even at a lower revision')
  t.same(cache.peek('t1')!.view(), [{ name: 'g', permissions: ['doc:read'], users: [], includes: [] }])

  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' })
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  t.same(await cache.sync(), { behind: [], repaired: ['t1'] }, 'same revision, other contents')
  t.notOk(cache.peek('t1')!.check('mallory', 'doc:read'))
  t.ok(cache.peek('t1')!.check('alice', 'doc:read'))
  t.same(await cache.sync(), { behind: [], repaired: [] }, 'healed')
  t.equal(cache.peek('t1')!.verified, true)
})

test('reload installs what the database holds, even at the same or a lower revision', async (t) => {
  const { store, cache } = await forged()
  t.equal(await cache.reload('t1'), 2, 'a revision the database never reached is dropped')
  t.notOk(cache.peek('t1')!.check('mallory', 'doc:read'))
  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' })
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  t.equal(await cache.reload('t1'), 3, 'the same revision, the database\'s contents')
  t.notOk(cache.peek('t1')!.check('mallory', 'doc:read'))
  t.ok(cache.peek('t1')!.check('alice', 'doc:read'))
})

test('an own write whose digest differs from the cache\'s result repairs the cache', async (t) => {
  const { store, cache } = await forged()
  // Revision 3 in the database is another change; the instance then writes revision 4 itself.
  await store.write('t1', { op: 'create-group', group: 'h' }, 'peer')
  const own = await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'self')
  await cache.applyOwn('t1', { op: 'assign-user', group: 'g', user: 'alice', revision: own.revision }, own.digest)
  t.equal(cache.peek('t1')!.digest, own.digest)
  t.notOk(cache.peek('t1')!.check('mallory', 'doc:read'))
  t.same(cache.peek('t1')!.view().map((group) => group.name), ['g', 'h'])
  t.match(cache.stats(), { repairs: 1 })
})

test('a flood of notices forcing repairs costs one reload, and repairs of a tenant are spaced', async (t) => {
  const { store, cache } = await forged({ repairSpacingMs: 60_000 })
  const real = await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  const snapshots = store.calls.snapshot
  const flood = Array.from({ length: 50 }, () => cache.noticed('t1', real.revision, real.digest))
  t.same(new Set(await Promise.all(flood)), new Set([3]))
  t.equal(store.calls.snapshot - snapshots, 1, '50 notices, one reload')
  t.match(cache.stats(), { repairs: 1 })
  t.notOk(cache.peek('t1')!.check('mallory', 'doc:read'))

  // Forged again at once: the next repair waits for the spacing, however many notices ask for it.
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' })
  const next = await store.write('t1', { op: 'assign-user', group: 'g', user: 'bob' }, 'peer')
  let answered = 0
  const second = Array.from({ length: 50 }, () => cache.noticed('t1', next.revision, next.digest).then((revision) => { answered++; return revision }))
  for (let i = 0; i < 5; i++) await turn()
  t.equal(answered, 0, 'no answer while holding contents it cannot vouch for')
  t.equal(store.calls.snapshot - snapshots, 1, 'no second reload within the spacing')
  mock.timers.tick(60_000)
  t.same(new Set(await Promise.all(second)), new Set([4]))
  t.equal(store.calls.snapshot - snapshots, 2, 'one more reload once the spacing is over')
  t.ok(cache.peek('t1')!.check('bob', 'doc:read'))
  t.notOk(cache.peek('t1')!.check('mallory', 'doc:read'))
})

test('hits and misses: get counts both, lookup counts a hit and leaves misses to get', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  t.equal(cache.lookup('t1'), undefined)
  t.match(cache.stats(), { hits: 0, misses: 0 }, 'a lookup of an uncached tenant counts nothing')
  await cache.get('t1')
  await cache.get('t1')
  t.equal(cache.lookup('t1')?.revision, 2)
  t.equal(cache.lookup('t1')?.revision, 2)
  t.same(cache.stats(), { tenants: 1, hits: 3, misses: 1, loads: 1, deltaCatchUps: 0, carriedCatchUps: 0, fullReloads: 0, repairs: 0, evictions: 0 })
})

test('revisions: up to the limit, most recently used first, without touching recency', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  // Written tenants: never-written ones are kept apart (test/cache/absent-tenants.test.ts).
  for (const tenant of ['a', 'b']) await store.write(tenant, { op: 'create-group', group: 'g' }, 'test')
  for (const tenant of ['a', 't1', 'b']) await cache.get(tenant)
  t.same(cache.revisions(10), [['b', 1], ['t1', 2], ['a', 1]])
  t.same(cache.revisions(2), [['b', 1], ['t1', 2]])
  t.same(cache.revisions(0), [])
  t.same(cache.tenants(), ['b', 't1', 'a'], 'recency untouched')
})

test('the tenant answered last is forgotten when it is evicted, reloaded or cleared', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 1 })
  const first = await cache.get('t1')
  t.equal(cache.peek('t1'), first)
  await store.write('other', { op: 'create-group', group: 'g' }, 'test') // a real tenant: it takes the one slot
  await cache.get('other')
  t.equal(cache.peek('t1'), undefined, 'evicted: not answered from the hot slot')

  await cache.get('t1')
  const before = cache.peek('t1')
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  t.equal(await cache.reload('t1'), 3)
  t.not(cache.peek('t1'), before, 'reloaded: the new state is answered')
  t.equal(cache.peek('t1')?.revision, 3)

  cache.clear()
  t.equal(cache.peek('t1'), undefined, 'cleared')
  t.same(cache.tenants(), [])
})

test('applyOwn: in place one revision ahead, from the store further ahead, nothing when uncached or older', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  const write = async (user: string) => {
    const { revision, digest } = await store.write('t1', { op: 'assign-user', group: 'g', user }, 'own')
    return [{ revision, op: 'assign-user' as const, group: 'g', user }, digest] as const
  }

  await cache.applyOwn('t1', ...await write('a'))
  t.equal(cache.peek('t1'), undefined, 'an uncached tenant is not loaded')
  t.equal(store.calls.snapshot, 0)

  await cache.get('t1')
  const b = await write('b')
  await cache.applyOwn('t1', ...b)
  t.equal(cache.peek('t1')?.revision, 4)
  t.ok(cache.peek('t1')!.check('b', 'doc:read'))
  t.equal(store.calls.changesSince, 0, 'one revision ahead: applied in place')

  await write('c')
  const d = await write('d')
  await cache.applyOwn('t1', ...d)
  t.equal(cache.peek('t1')?.revision, 6)
  t.ok(cache.peek('t1')!.check('c', 'doc:read'), 'the other instance\'s write in between is caught up too')
  t.equal(store.calls.changesSince, 1)

  await cache.applyOwn('t1', ...b)
  t.equal(cache.peek('t1')?.revision, 6, 'an older write changes nothing')
  t.equal(store.calls.changesSince, 1)
})

test('a sync with nothing cached asks the store nothing', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  t.same(await cache.sync(), { behind: [], repaired: [] })
  t.equal(store.calls.revisions, 0)
})

test('a tenant answered from the hot slot is still the most recently used when another is loaded', async (t) => {
  const store = await seeded()
  for (const tenant of ['x', 'y', 'z']) await store.write(tenant, { op: 'create-group', group: 'g' }, 'test') // real tenants
  const cache = new TenantCache({ store, maxTenants: 2 })
  await cache.get('x')
  cache.peek('x')
  await cache.get('y')
  cache.peek('x') // used after y was loaded
  await cache.get('z')
  t.same(cache.tenants(), ['z', 'x'], 'y, the least recently used, is the one evicted')
})

test('a trailing run serving several requests does what each asked: the latest carried change, a reload asked after a catch-up', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  let release = store.hold('changesSince')
  const running = cache.catchUp('t1')
  const a = await store.write('t1', { op: 'assign-user', group: 'g', user: 'a' }, 'peer')
  const b = await store.write('t1', { op: 'assign-user', group: 'g', user: 'b' }, 'peer')
  // Both wait for the running catch-up and share one trailing run: it must serve revision 4, not 3.
  const notices = [
    carrying(cache, a, { op: 'assign-user', group: 'g', user: 'a' }),
    carrying(cache, b, { op: 'assign-user', group: 'g', user: 'b' })
  ]
  release()
  await running
  t.same(await Promise.all(notices), [4, 4], 'the trailing run carried the later change (and read the log for the gap)')
  t.ok(cache.peek('t1')!.check('b', 'doc:read'))

  release = store.hold('changesSince')
  const again = cache.catchUp('t1')
  const queued = [cache.catchUp('t1'), cache.reload('t1')]
  const snapshots = store.calls.snapshot
  release()
  await Promise.all([again, ...queued])
  t.equal(store.calls.snapshot - snapshots, 1, 'the reload asked after a queued catch-up still ran')
  t.match(cache.stats(), { fullReloads: 1 })
})

test('pin keeps a tenant found past maxTenants until as many unpins', async (t) => {
  const store = await seeded()
  for (const tenant of ['x', 'y']) await store.write(tenant, { op: 'create-group', group: 'g' }, 'test')
  const cache = new TenantCache({ store, maxTenants: 1 })
  cache.pin('t1')
  cache.pin('t1')
  await cache.get('t1')
  await cache.get('x')
  t.same(cache.tenants(), ['x'], 'dropped from the LRU…')
  t.equal(cache.peek('t1')?.revision, 2, '…but still found')
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  t.equal(await cache.noticed('t1', 3), 3, 'and caught up by notices')
  cache.unpin('t1')
  await cache.get('y')
  t.equal(cache.peek('t1')?.revision, 3, 'one pin left')
  cache.unpin('t1')
  await cache.get('x')
  t.equal(cache.peek('t1'), undefined, 'released by the last unpin')
  cache.unpin('t1')
  t.equal(cache.peek('t1'), undefined, 'an unpin too many changes nothing')
})

test('an eviction is counted only when the LRU drops a tenant for room, not when a reload replaces it', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  await cache.reload('t1')
  await cache.reload('t1')
  t.match(cache.stats(), { evictions: 0, fullReloads: 2 })
})

test('every move of a cached tenant is reported to onAdvance with its revision', async (t) => {
  const store = await seeded()
  const moves: Array<[string, number]> = []
  const cache = new TenantCache({ store, maxTenants: 10, onAdvance: (tenant, revision) => moves.push([tenant, revision]) })
  await cache.get('t1')
  const a = await store.write('t1', { op: 'assign-user', group: 'g', user: 'a' }, 'own')
  await cache.applyOwn('t1', { op: 'assign-user', group: 'g', user: 'a', revision: a.revision }, a.digest)
  const b = await store.write('t1', { op: 'assign-user', group: 'g', user: 'b' }, 'peer')
  await carrying(cache, b, { op: 'assign-user', group: 'g', user: 'b' })
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'c' }, 'peer')
  await cache.noticed('t1', 5)
  await cache.reload('t1')
  t.same(moves, [['t1', 2], ['t1', 3], ['t1', 4], ['t1', 5], ['t1', 5]], 'the load, an own write, a carried change, a changelog catch-up, a reload')
})

test('a notice or an own write arriving while the tenant is first loaded waits for the load, then applies', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  // The load reads revision 2 at once and answers late; revision 3 is written meanwhile.
  let release = store.hold('snapshot')
  let load = cache.get('t1')
  const peer = await store.write('t1', { op: 'assign-user', group: 'g', user: 'p' }, 'peer')
  const notice = cache.noticed('t1', peer.revision)
  release()
  await load
  t.equal(await notice, 3, 'the notice waited for the load and caught it up')

  cache.clear()
  release = store.hold('snapshot')
  load = cache.get('t1')
  const own = await store.write('t1', { op: 'assign-user', group: 'g', user: 'o' }, 'own')
  const applied = cache.applyOwn('t1', { op: 'assign-user', group: 'g', user: 'o', revision: own.revision }, own.digest)
  release()
  await Promise.all([load, applied])
  t.equal(cache.peek('t1')?.revision, 4, 'the own write waited for the load and was applied')
  t.ok(cache.peek('t1')!.check('o', 'doc:read'))

  cache.clear()
  release = store.hold('snapshot')
  load = cache.get('t1')
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'q' }, 'peer')
  const caughtUp = cache.catchUp('t1')
  release()
  await Promise.all([load, caughtUp])
  t.equal(cache.peek('t1')?.revision, 5, 'a catch-up asked during the load ran after it')
})

test('an own write at the cached revision reads nothing', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const own = await store.write('t1', { op: 'assign-user', group: 'g', user: 'o' }, 'own')
  await cache.noticed('t1', own.revision)
  const reads = store.calls.changesSince + store.calls.snapshot
  await cache.applyOwn('t1', { op: 'assign-user', group: 'g', user: 'o', revision: own.revision }, own.digest)
  t.equal(store.calls.changesSince + store.calls.snapshot, reads)
})

test('contents a peer carried are vouched for by the database: by a sync, and by an own write in place', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const carry = async (user: string) => {
    const w = await store.write('t1', { op: 'assign-user', group: 'g', user }, 'peer')
    await carrying(cache, w, { op: 'assign-user', group: 'g', user })
  }
  await carry('a')
  t.equal(cache.peek('t1')!.verified, false, 'carried: a peer\'s word')
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'b' }, 'peer')
  t.same(await cache.sync(), { behind: ['t1'], repaired: [] }, 'behind, caught up from the changelog')
  t.equal(cache.peek('t1')!.verified, true, 'then vouched for by the database\'s digest')

  await carry('c')
  t.equal(cache.peek('t1')!.verified, false)
  const own = await store.write('t1', { op: 'assign-user', group: 'g', user: 'o' }, 'own')
  await cache.applyOwn('t1', { op: 'assign-user', group: 'g', user: 'o', revision: own.revision }, own.digest)
  t.equal(cache.peek('t1')!.verified, true, 'an own write whose digest the database gave vouches for the contents')
})

test('a notice of an older revision does not judge the digest of the contents cached now', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const old = { revision: 2, digest: cache.peek('t1')!.digest }
  const w = await store.write('t1', { op: 'assign-user', group: 'g', user: 'a' }, 'peer')
  await carrying(cache, w, { op: 'assign-user', group: 'g', user: 'a' })
  const reads = store.calls.changesSince + store.calls.snapshot
  t.equal(await cache.noticed('t1', old.revision, old.digest), 3, 'a late notice of revision 2')
  t.equal(store.calls.changesSince + store.calls.snapshot, reads, 'nothing read, nothing repaired')
  t.match(cache.stats(), { repairs: 0 })
})

test('a carried change the cache already holds, or one past a gap, is never applied on top', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  // Revision 3 assigns u, revision 4 unassigns u: the carried change of 4, applied to revision 2,
  // would give the database's digest at 4, yet skip revision 3.
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'u' }, 'peer')
  const w4 = await store.write('t1', { op: 'unassign-user', group: 'g', user: 'u' }, 'peer')
  t.equal(await carrying(cache, w4, { op: 'unassign-user', group: 'g', user: 'u' }), 4)
  t.match(cache.stats(), { carriedCatchUps: 0, deltaCatchUps: 1 })

  // A catch-up reaching revision 5 is running when the notice carrying 5 arrives: the trailing run has nothing to do.
  const w5 = await store.write('t1', { op: 'assign-user', group: 'g', user: 'v' }, 'peer')
  const release = store.hold('changesSince')
  const running = cache.catchUp('t1')
  const notice = carrying(cache, w5, { op: 'assign-user', group: 'g', user: 'v' })
  release()
  await running
  t.equal(await notice, 5)
  t.equal(store.calls.changesSince, 2, 'the trailing run read nothing')
})

test('repairs forced by notices read no changelog', async (t) => {
  const { store, cache } = await forged()
  const real = await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  const reads = store.calls.changesSince
  await Promise.all(Array.from({ length: 5 }, () => cache.noticed('t1', real.revision, real.digest)))
  t.equal(store.calls.changesSince, reads, 'a repair reloads; the runs it was merged with read no changelog')
  t.match(cache.stats(), { repairs: 1 })
})

/** An own write's change as `applyOwn` takes it. */
function own (write: { revision: number }, user: string) {
  return { op: 'assign-user' as const, group: 'g', user, revision: write.revision }
}

test('a trailing run merging a repair with a reload or a catch-up still does each when the repair has nothing left to do', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  // A reload, then a repair of the forged state, queued behind a running reload that replaces it.
  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' })
  let release = store.hold('snapshot')
  const running = cache.reload('t1') // reads the database at revision 2
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  const reload = cache.reload('t1') // asked after revision 3 was written
  const repair = cache.noticed('t1', 3, 'ff'.repeat(16)) // the forged state is not the database's: a repair of it
  release()
  await running
  t.equal(await reload, 3, 'the reload ran, though the repair merged with it had nothing to do')
  t.equal(await repair, 3)

  // A repair, then a catch-up, queued behind a running reload that replaces the suspect.
  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' })
  release = store.hold('snapshot')
  const running2 = cache.reload('t1') // reads the database at revision 3
  const repair2 = cache.noticed('t1', 4, 'ff'.repeat(16))
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'bob' }, 'peer')
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'carol' }, 'peer')
  const notice = cache.noticed('t1', 5) // behind: a catch-up, merged after the repair
  release()
  await Promise.all([running2, repair2])
  t.equal(await notice, 5, 'the catch-up ran, though the repair merged before it had nothing to do')
  t.ok(cache.peek('t1')!.check('carol', 'doc:read'))
  t.notOk(cache.peek('t1')!.check('mallory', 'doc:read'))
})

test('a change applied in place moves a never-written tenant to the LRU, and nothing else', async (t) => {
  const store = await seeded()
  await store.write('x', { op: 'create-group', group: 'g' }, 'test')
  const cache = new TenantCache({ store, maxTenants: 1 })
  // A pinned tenant dropped from the LRU stays out of it when notices move it: it would evict another.
  cache.pin('t1')
  await cache.get('t1')
  await cache.get('x')
  const w = await store.write('t1', { op: 'assign-user', group: 'g', user: 'a' }, 'peer')
  t.equal(await carrying(cache, w, { op: 'assign-user', group: 'g', user: 'a' }), 3)
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'b' }, 'peer')
  t.equal(await cache.noticed('t1', 4), 4)
  t.same(cache.tenants(), ['x'], 'the carried change and the changelog catch-up left the LRU as it was')
  // A never-written tenant caught up with nothing to apply stays with the absent ones.
  await cache.get('never')
  await cache.catchUp('never')
  t.same(cache.tenants(), ['x'])
  t.equal(cache.peek('never')?.revision, 0)
})

test('a tenant that moves while the sync reads the database is judged by the next sync: neither repaired nor vouched for', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const release = store.hold('revisions')
  const sync = cache.sync() // reads revision 2
  const w = await store.write('t1', { op: 'assign-user', group: 'g', user: 'a' }, 'peer')
  await carrying(cache, w, { op: 'assign-user', group: 'g', user: 'a' }) // revision 3, a peer's word
  release()
  t.same(await sync, { behind: [], repaired: [] }, 'ahead of what the query read, but it moved meanwhile')
  t.equal(cache.peek('t1')!.verified, false, 'still a peer\'s word')
  t.equal(store.calls.snapshot, 1, 'nothing reloaded')
  t.same(await cache.sync(), { behind: [], repaired: [] })
  t.equal(cache.peek('t1')!.verified, true, 'the next sync vouches for it')
})

test('repairs asked by the sync are not spaced: only those notices ask for are', async (t) => {
  const { cache } = await forged({ repairSpacingMs: 60_000 })
  t.same(await cache.sync(), { behind: [], repaired: ['t1'] })
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' })
  let done = false
  const second = cache.sync().then((result) => { done = true; return result })
  for (let i = 0; i < 10; i++) await turn()
  t.ok(done, 'the second repair ran at once')
  mock.timers.tick(60_000) // (lets a spaced repair end, so that the test ends either way)
  t.same(await second, { behind: [], repaired: ['t1'] })
  t.notOk(cache.peek('t1')!.check('mallory', 'doc:read'))
  t.match(cache.stats(), { repairs: 2 })
})

test('a spaced repair whose suspect was dropped and loaded again meanwhile reads nothing', async (t) => {
  const { store, cache } = await forged({ repairSpacingMs: 60_000 })
  const real = await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  t.equal(await cache.noticed('t1', real.revision, real.digest), 3, 'the first repair')
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' })
  const next = await store.write('t1', { op: 'assign-user', group: 'g', user: 'bob' }, 'peer')
  const notice = cache.noticed('t1', next.revision, next.digest) // a second repair: waits for the spacing
  for (let i = 0; i < 5; i++) await turn()
  cache.clear()
  await cache.get('t1') // the database's contents at revision 4
  const snapshots = store.calls.snapshot
  mock.timers.tick(60_000)
  t.equal(await notice, 4)
  t.equal(store.calls.snapshot, snapshots, 'the state loaded meanwhile came from the database: no reload')
  t.match(cache.stats(), { repairs: 1 })
  t.ok(cache.peek('t1')!.check('bob', 'doc:read'))
})

test('a reload outrun by own writes applied in place reads at most three snapshots; the sync then catches up', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  const snapshots = store.calls.snapshot
  let release = store.hold('snapshot')
  const reload = cache.reload('t1') // reads revision 2
  for (const user of ['a', 'b', 'c']) {
    const w = await store.write('t1', { op: 'assign-user', group: 'g', user }, 'own')
    await cache.applyOwn('t1', own(w, user), w.digest) // in place, past the snapshot being read
    release()
    release = store.hold('snapshot')
    await turn() // the reload reads again
  }
  release()
  await reload
  t.equal(store.calls.snapshot - snapshots, 3, 'three snapshots, the last one installed')
  t.equal(cache.peek('t1')!.revision, 4, 'one own write behind')
  t.same(await cache.sync(), { behind: ['t1'], repaired: [] })
  t.ok(cache.peek('t1')!.check('c', 'doc:read'))
})

test('a reload reads one snapshot when the cached state did not move past it', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  // Ahead of the database (a forged change), not moving: the database's revision is installed at once.
  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' })
  let snapshots = store.calls.snapshot
  t.equal(await cache.reload('t1'), 2)
  t.equal(store.calls.snapshot - snapshots, 1)

  // An own write committed before the snapshot was read, applied in place while it was: the snapshot holds it.
  const w = await store.write('t1', { op: 'assign-user', group: 'g', user: 'o' }, 'own')
  snapshots = store.calls.snapshot
  const release = store.hold('snapshot')
  const reload = cache.reload('t1') // reads revision 3
  await cache.applyOwn('t1', own(w, 'o'), w.digest)
  release()
  t.equal(await reload, 3)
  t.equal(store.calls.snapshot - snapshots, 1)
})

test('a reload does not install a snapshot older than the state loaded while it was read', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' }) // revision 3, the database at 2
  const releaseReload = store.hold('snapshot')
  const reload = cache.reload('t1') // reads revision 2
  cache.clear() // the forged state is dropped…
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'alice' }, 'peer')
  const releaseLoad = store.hold('snapshot')
  const load = cache.get('t1') // …and revision 3 loaded: another state at the same revision
  releaseLoad()
  t.equal((await load).revision, 3)
  releaseReload()
  t.equal(await reload, 3, 'read again: the snapshot of revision 2 would move the tenant back')
  t.ok(cache.peek('t1')!.check('alice', 'doc:read'))
})

test('a first load that ends after a reload of the same tenant keeps the newer state, or the one installed first', async (t) => {
  const store = await seeded()
  const moves: number[] = []
  const cache = new TenantCache({ store, maxTenants: 10, onAdvance: (_tenant, revision) => moves.push(revision) })
  let release = store.hold('snapshot')
  const reload = cache.reload('t1') // not cached: reads revision 2
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'a' }, 'peer')
  const load = cache.get('t1') // reads revision 3, answered after the reload installed 2
  release()
  const loaded = await load
  await reload
  t.equal(loaded.revision, 3, 'the newer snapshot wins')
  t.equal(cache.peek('t1'), loaded)

  cache.clear()
  release = store.hold('snapshot')
  const reload2 = cache.reload('t1')
  const load2 = cache.get('t1') // the same revision as the reload's
  release()
  await reload2
  t.equal(await load2, cache.peek('t1'), 'the state the reload installed is kept')
  t.same(moves, [2, 3, 3], 'the load of the same revision installed nothing')
})

test('a repair the sync asked for, whose suspect a reload replaced meanwhile, reads nothing more', async (t) => {
  const store = await seeded()
  const cache = new TenantCache({ store, maxTenants: 10 })
  await cache.get('t1')
  await forge(cache, { op: 'assign-user', group: 'g', user: 'mallory' }) // revision 3, the database at 2
  const release = store.hold('snapshot')
  const running = cache.reload('t1')
  const sync = cache.sync() // finds the forged state ahead: a repair of it, queued behind the reload
  await turn()
  release()
  await running
  t.same(await sync, { behind: [], repaired: ['t1'] })
  t.equal(store.calls.changesSince, 0, 'the reload served it: no catch-up either')
  t.equal(cache.peek('t1')!.revision, 2)
})
