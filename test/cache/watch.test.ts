/**
 * `app.policyCache.watch`: every change as this instance applies it, as the audit feed's entry, in
 * order without gaps or duplicates; resuming with `after` from the changelog (a `reset` when pruned);
 * the bounds (a consumer that does not take its events is dropped with its queue bounded; at most
 * `maxWatchers` open); `drain()` ending every watch; watched tenants kept cached.
 */
import { test } from 'tap'
import { MemoryPolicyStore } from '../../examples/custom-store.js'
import type { WatchEvent } from '../../lib/cache/watchers.js'
import { revisions, take } from '../helpers/watch.js'
import type { ChangesPage } from '../../lib/model.js'
import { buildApp } from '../helpers/app.js'

/** A memory store whose changelog reads (`changes`) a test can hold, fail or rewrite. */
class ChangelogStore extends MemoryPolicyStore {
  reads = 0
  /** Awaited before each read: it holds the read while it waits, fails it when it throws. */
  before: () => Promise<void> | void = () => {}
  /** Rewrites each page read. */
  rewrite: (page: ChangesPage) => ChangesPage = (page) => page
  override async changes (tenant: string, after: number, limit: number): Promise<ChangesPage> {
    this.reads++
    await this.before()
    return this.rewrite(await super.changes(tenant, after, limit))
  }
}

test('own writes, single and batch: one event per revision with the audit entry', async (t) => {
  const app = await buildApp(t, { serverId: 'server-a' })
  const pc = app.policyCache
  const watch = await pc.watch('t1')
  t.equal(watch.after, 0, 'a tenant never written: from 0')
  t.equal(watch.tenant, 't1')
  await pc.createGroup('t1', 'g', { actor: 'alice' })
  await pc.batch('t1', [{ op: 'assign-user', group: 'g', user: 'u1' }, { op: 'add-permission', group: 'g', permission: 'docs:*' }])
  await pc.assignUser('t1', 'g', 'u1') // no effect, no revision
  await pc.unassignUser('t1', 'g', 'u1')
  const events = await take(watch, 3)
  t.match(events, [
    { type: 'change', entry: { revision: 1, change: { op: 'create-group', group: 'g' }, origin: 'server-a', actor: 'alice' } },
    { type: 'change', entry: { revision: 2, change: { op: 'batch', changes: [{ op: 'assign-user', user: 'u1' }, { op: 'add-permission', permission: 'docs:*' }] }, actor: null } },
    { type: 'change', entry: { revision: 3, change: { op: 'unassign-user', group: 'g', user: 'u1' } } }
  ])
  t.type((events[0] as { entry: { committedAt: unknown } }).entry.committedAt, 'number')
  t.equal(pc.stats().watchers, 1)
  watch.close()
  watch.close()
  t.equal(await watch.ended, undefined, 'closed by its consumer: no final event')
  t.strictSame(await take(watch, 1), [], 'a closed watch ends its iteration')
  t.equal(pc.stats().watchers, 0)
})

test('without after: from the revision cached now; with after: the committed changes first, then live, no duplicate at the seam', async (t) => {
  const app = await buildApp(t)
  const pc = app.policyCache
  for (let i = 0; i < 5; i++) await pc.createGroup('t1', `g${i}`)
  const current = await pc.watch('t1')
  t.equal(current.after, 5)
  const resumed = await pc.watch('t1', { after: 2 })
  t.equal(resumed.after, 2)
  await pc.createGroup('t1', 'g5')
  t.strictSame(revisions(await take(current, 1)), [6])
  t.strictSame(revisions(await take(resumed, 4)), [3, 4, 5, 6], 'the changelog up to the live feed, then the live feed')
  await pc.createGroup('t1', 'g6')
  t.strictSame(revisions(await take(resumed, 1)), [7])
  t.strictSame(revisions(await take(current, 1)), [7])
  // Leaving a for-await loop closes the watch.
  await pc.createGroup('t1', 'g7')
  const iterator = resumed[Symbol.asyncIterator]()
  t.strictSame(revisions([(await iterator.next()).value as WatchEvent]), [8])
  t.strictSame(await iterator.return?.(), { value: undefined, done: true }, 'leaving a for-await loop closes the watch')
  t.equal(pc.stats().watchers, 1, 'only `current` is open')
})

test('resuming from far back: a page at a time, paced by the consumer, the queue within maxBuffered', async (t) => {
  const app = await buildApp(t, { watch: { maxBuffered: 4 } })
  const pc = app.policyCache
  for (let i = 0; i < 30; i++) await pc.createGroup('t1', `g${i}`)
  const watch = await pc.watch('t1', { after: 0 })
  const seen: number[] = []
  for await (const event of watch) {
    t.ok(watch.buffered <= 4, `buffered ${watch.buffered}`)
    if (event.type === 'change') seen.push(event.entry.revision)
    if (seen.length === 30) break
  }
  t.strictSame(seen, Array.from({ length: 30 }, (_, i) => i + 1))
  t.equal(pc.stats().watchersDropped, 0, 'a resuming consumer is never dropped for its backlog')
})

test('a consumer that does not take its events is dropped; its queue never exceeds maxBuffered', async (t) => {
  const app = await buildApp(t, { watch: { maxBuffered: 5 } })
  const pc = app.policyCache
  const slow = await pc.watch('t1')
  const reader = await pc.watch('t1')
  const read: number[] = []
  const reading = (async () => {
    for await (const event of reader) {
      if (event.type === 'change') read.push(event.entry.revision)
      if (read.length === 7) break
    }
  })()
  for (let i = 0; i < 6; i++) {
    await pc.createGroup('t1', `g${i}`)
    t.ok(slow.buffered <= 5, `buffered ${slow.buffered}`)
  }
  // The sixth event it does not take drops it.
  t.match(await slow.ended, { type: 'end', code: 'FST_POLICY_CACHE_WATCH_OVERFLOW', message: /5 were waiting \(watch\.maxBuffered\)/ })
  t.match(pc.stats(), { watchersDropped: 1, watchers: 1 })
  t.ok(pc.stats().watchBuffered <= 1, 'the reader\'s queue holds at most the event in flight')
  t.equal(slow.buffered, 1, 'its events dropped for the final one')
  await pc.createGroup('t1', 'g6')
  t.match(await take(slow, 2), [{ type: 'end', code: 'FST_POLICY_CACHE_WATCH_OVERFLOW' }], 'only the final event, then the end')
  await reading
  t.strictSame(read, [1, 2, 3, 4, 5, 6, 7], 'the other watch of the tenant went on')
  t.equal(pc.stats().watchers, 0)
})

test('maxWatchers: beyond it a coded 503; a closed watch frees its place', async (t) => {
  const app = await buildApp(t, { watch: { maxWatchers: 2 } })
  const pc = app.policyCache
  const first = await pc.watch('t1')
  await pc.watch('t2')
  await t.rejects(pc.watch('t3'), { statusCode: 503, code: 'FST_POLICY_CACHE_TOO_MANY_WATCHERS', message: /serves 2 watch streams already/ })
  first.close()
  const again = await pc.watch('t3')
  t.equal(again.after, 0)
})

test('refusals: a malformed tenant or after, after past the database, a failed load; none holds a place', async (t) => {
  class Failing extends MemoryPolicyStore {
    fail = false
    override async snapshot (tenant: string) {
      if (this.fail) throw new Error('database gone')
      return await super.snapshot(tenant)
    }
  }
  const store = new Failing()
  const app = await buildApp(t, { db: store, watch: { maxWatchers: 1 } })
  const pc = app.policyCache
  await pc.createGroup('t1', 'g')
  await t.rejects(pc.watch('bad id'), { statusCode: 400, message: /^Invalid tenant: / })
  for (const after of [-1, 1.5, '1' as never, Number.MAX_SAFE_INTEGER + 1]) {
    await t.rejects(pc.watch('t1', { after }), { statusCode: 400, message: /^Invalid after: / }, String(after))
  }
  await t.rejects(pc.watch('t1', { after: 2 }), { statusCode: 412, code: 'FST_POLICY_CACHE_REVISION_AHEAD' })
  store.fail = true
  await t.rejects(pc.watch('t2'), { statusCode: 503, code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' })
  t.equal(pc.stats().watchers, 0)
  t.equal((await pc.watch('t1', { after: 1 })).after, 1, 'the one place is free')
})

test('changes pruned: a reset naming the oldest kept and where the watch continues, then live', async (t) => {
  const app = await buildApp(t, { changelogRetention: 10 })
  const pc = app.policyCache
  // Pruned at revision 64, down to the newest 10.
  for (let i = 0; i < 64; i++) await pc.createGroup('t1', `g${i}`)
  const watch = await pc.watch('t1', { after: 3 })
  await pc.createGroup('t1', 'late')
  const events = await take(watch, 2)
  t.match(events[0], {
    type: 'reset',
    code: 'FST_POLICY_CACHE_CHANGES_PRUNED',
    oldestRevision: 55,
    revision: 64,
    message: /no longer holds the revisions after 3: the oldest kept is revision 55 .*read the tenant again \(minRevision 64\): this watch continues after revision 64$/
  })
  t.strictSame(revisions(events), ['reset@64', 65])
})

test('changes pruned under the live feed (the cache moved past them without the watch): a reset at the cached revision', async (t) => {
  // A changelog that never holds anything: every read of it is pruned.
  const store = new ChangelogStore()
  store.rewrite = (page) => ({ ...page, oldestRevision: null, entries: [] })
  const app = await buildApp(t, { db: store })
  const watch = await app.policyCache.watch('t1')
  await app.policyCache.createGroup('t1', 'g')
  t.match(await take(watch, 1), [{ type: 'reset', oldestRevision: null, revision: 1, message: /it holds none/ }])
  await app.policyCache.createGroup('t1', 'h')
  t.match(await take(watch, 1), [{ type: 'reset', revision: 2 }])
})

test('the changelog failing: the watch ends with the coded 503 as its final event', async (t) => {
  const store = new ChangelogStore()
  const app = await buildApp(t, { db: store })
  const pc = app.policyCache
  await pc.createGroup('t1', 'g')
  const live = await pc.watch('t1')
  const resuming = await pc.watch('t1', { after: 0 })
  store.before = () => { throw new Error('connection reset') }
  await pc.createGroup('t1', 'h')
  t.match(await live.ended, { type: 'end', code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE', message: /the cause is in the server log/ })
  t.match(await take(resuming, 2), [{ type: 'end', code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' }], 'a catch-up read failing too')
  t.equal(pc.stats().watchers, 0)
})

test('drain() ends every watch after its queued events, and refuses new ones', async (t) => {
  const app = await buildApp(t)
  const pc = app.policyCache
  const watch = await pc.watch('t1')
  await pc.createGroup('t1', 'g')
  // The event is queued once the changelog was read: wait for it without taking it.
  while (watch.buffered === 0) await new Promise((resolve) => setImmediate(resolve))
  const opening = pc.watch('t2')
  await pc.drain()
  t.match(await watch.ended, { type: 'end', code: 'FST_POLICY_CACHE_CLOSING' })
  t.strictSame(revisions(await take(watch, 3)), [1, 'end@FST_POLICY_CACHE_CLOSING'])
  await t.rejects(opening, { statusCode: 503, code: 'FST_POLICY_CACHE_CLOSING' }, 'a watch still opening when the drain began')
  await t.rejects(pc.watch('t1'), { statusCode: 503, code: 'FST_POLICY_CACHE_CLOSING', message: /no new writes or watch streams/ })
  t.equal(pc.stats().watchers, 0)
})

test('a watched tenant stays cached past maxTenants: peers\' changes still reach the watch', async (t) => {
  const app = await buildApp(t, { maxTenants: 1 })
  const pc = app.policyCache
  await pc.createGroup('t1', 'g')
  const watch = await pc.watch('t1')
  await pc.createGroup('t2', 'g')
  await pc.revision('t2') // loaded: it takes the only place of the LRU
  t.strictSame(pc.cachedRevisions(), [['t2', 1]], 't1 left the LRU')
  await pc.createGroup('t1', 'h')
  t.strictSame(revisions(await take(watch, 1)), [2], 'its own write applied to the pinned state')
  t.equal(pc.stats().loads, 2, 'never reloaded')
  watch.close()
  await pc.createGroup('t3', 'g')
  t.equal(pc.stats().watchers, 0)
})

test('a watch closed while it reads the changelog: the page read is dropped', async (t) => {
  let release!: () => void
  let reading!: () => void
  const read = new Promise<void>((resolve) => { reading = resolve })
  const gate = new Promise<void>((resolve) => { release = resolve })
  const store = new ChangelogStore()
  const app = await buildApp(t, { db: store })
  const pc = app.policyCache
  for (let i = 0; i < 3; i++) await pc.createGroup('t1', `g${i}`)
  const watch = await pc.watch('t1', { after: 0 })
  store.before = async () => {
    reading()
    await gate
  }
  const next = watch[Symbol.asyncIterator]().next()
  await read
  watch.close()
  release()
  t.strictSame(await next, { value: undefined, done: true })
  t.equal(watch.buffered, 0)
  t.equal(pc.stats().watchers, 0)
})

test('a changelog behind the cache (a database restored from a backup): no events until it holds them, no busy loop', async (t) => {
  const store = new ChangelogStore()
  store.rewrite = (page) => ({ ...page, entries: [] })
  const app = await buildApp(t, { db: store })
  const pc = app.policyCache
  await pc.createGroup('t1', 'g')
  const resuming = await pc.watch('t1', { after: 0 })
  const live = await pc.watch('t1')
  const next = resuming[Symbol.asyncIterator]().next()
  await pc.createGroup('t1', 'h')
  // The catch-up read nothing and joined the live feed; the live read found nothing and waits.
  while (store.reads < 2) await new Promise((resolve) => setImmediate(resolve))
  store.rewrite = (page) => page
  await pc.createGroup('t1', 'k')
  t.strictSame(revisions([(await next).value as WatchEvent]), [2], 'from where the hub stood')
  t.strictSame(revisions(await take(live, 2)), [2, 3])
  t.strictSame(revisions(await take(resuming, 1)), [3])
})

test('a watch starting after a revision the live feed is still reading: that change is not repeated', async (t) => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  const store = new ChangelogStore()
  const app = await buildApp(t, { db: store })
  const pc = app.policyCache
  await pc.createGroup('t1', 'g')
  const early = await pc.watch('t1')
  store.before = () => gate
  await pc.createGroup('t1', 'h') // applied at 2; the live feed's read of it waits
  const late = await pc.watch('t1', { after: 2 })
  release()
  await pc.createGroup('t1', 'k')
  t.strictSame(revisions(await take(early, 2)), [2, 3])
  t.strictSame(revisions(await take(late, 1)), [3])
})
