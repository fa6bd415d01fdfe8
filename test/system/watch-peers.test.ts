/**
 * A watch on one instance streams the changes written on another, whichever way they reach it: a
 * notice carrying the change, a notice naming a large batch (read from the changelog), a reload, a
 * sync — in revision order, without a gap or a duplicate, each the audit feed's entry. Two instances
 * over real HTTP (test/helpers/cluster.ts), plus a writer no instance hears from.
 */
import Fastify from 'fastify'
import { test } from 'tap'
import { MAX_CARRIED_BATCH } from '../../lib/broadcast/notice.js'
import { take } from '../helpers/watch.js'
import type { Change } from '../../lib/model.js'
import type { PolicyCache } from '../../lib/policy-cache.js'
import policyCache from '../../lib/plugin.js'
import { startCluster } from '../helpers/cluster.js'
import { openStream } from '../helpers/sse.js'
import { tempDir } from '../helpers/app.js'
import { join } from 'node:path'

test('a peer\'s writes, carried or read from the changelog, and changes found by a reload or a sync', async (t) => {
  const file = join(tempDir(t), 'cluster.db')
  const [a, b] = await startCluster(t, 2, { file })
  // A writer sharing the database that no instance lists as a peer: its writes reach B only by reading.
  const silent = Fastify()
  t.teardown(() => silent.close())
  await silent.register(policyCache, { sqliteFile: file, serverId: 'silent', syncIntervalMs: 0 })

  await a.app.policyCache.createGroup('t1', 'staff')
  t.equal(await b.app.policyCache.revision('t1'), 1)
  const watch = await b.app.policyCache.watch('t1')
  const stream = await openStream(`${b.url}/tenants/t1/watch`)
  t.teardown(stream.close)
  t.match(await stream.next(), { event: 'ready', id: '1' })
  const before = b.app.policyCache.stats()

  await a.app.policyCache.assignUser('t1', 'staff', 'alice', { actor: 'admin' })
  const large: Change[] = Array.from({ length: MAX_CARRIED_BATCH + 1 }, (_, i) => ({ op: 'assign-user', group: 'staff', user: `u${i}` }))
  await a.app.policyCache.batch('t1', large)
  const events = await take(watch, 2)
  const afterNotices = b.app.policyCache.stats()
  t.equal(afterNotices.carriedCatchUps - before.carriedCatchUps, 1, 'the single change came carried')
  t.equal(afterNotices.deltaCatchUps - before.deltaCatchUps, 1, 'the large batch from the changelog')

  await silent.policyCache.createGroup('t1', 'hidden')
  await b.app.policyCache.refresh('t1')
  await silent.policyCache.createGroup('t1', 'hidden2')
  t.strictSame((await (b.app.policyCache as unknown as PolicyCache).sync()).behind, ['t1'])
  t.equal(b.app.policyCache.stats().fullReloads - before.fullReloads, 1, 'one change found by a reload')
  events.push(...await take(watch, 2))

  t.strictSame(events.map((event) => event.type === 'change' ? [event.entry.revision, event.entry.origin] : event.type), [
    [2, 'node-1'], [3, 'node-1'], [4, 'silent'], [5, 'silent']
  ])
  t.match(events[0], { entry: { change: { op: 'assign-user', user: 'alice' }, actor: 'admin' } })
  t.match(events[1], { entry: { change: { op: 'batch' } } })
  t.equal((events[1] as { entry: { change: { changes: Change[] } } }).entry.change.changes.length, MAX_CARRIED_BATCH + 1, 'the batch in one event')

  const overHttp = await stream.until((event) => event.id === '5')
  t.strictSame(overHttp.map((event) => event.id), ['2', '3', '4', '5'], 'the SSE stream: the same, in order')
  t.equal(overHttp[1].data.changes.length, MAX_CARRIED_BATCH + 1)
})

test('a stream on a peer resumes from the id another instance sent', async (t) => {
  const [a, b] = await startCluster(t, 2)
  await a.app.policyCache.createGroup('t1', 'g')
  const onA = await openStream(`${a.url}/tenants/t1/watch?after=0`)
  const first = await onA.until((event) => event.id === '1')
  t.strictSame(first.map((event) => event.event), ['ready', 'change'])
  onA.close()
  await a.app.policyCache.createGroup('t1', 'h')
  const onB = await openStream(`${b.url}/tenants/t1/watch`, { 'last-event-id': '1' })
  t.teardown(onB.close)
  await a.app.policyCache.createGroup('t1', 'k')
  const resumed = await onB.until((event) => event.id === '3')
  t.strictSame(resumed.map((event) => `${event.event}:${event.id}`), ['ready:1', 'change:2', 'change:3'])
})
