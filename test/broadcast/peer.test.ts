/** One peer's queue, waits, state, circuit breaker and lag, without any network. */
import { test } from 'tap'
import { MAX_NOTICE_BYTES, MAX_NOTICE_CHANGES, type NoticeChange } from '../../lib/broadcast/notice.js'
import { Peer } from '../../lib/broadcast/peer.js'

const change = (tenant: string, revision: number, user = `u${revision}`): NoticeChange =>
  ({ tenant, revision, operation: 'assign-user', group: 'g', user })
const breaker = { failureThreshold: 3, cooldownMs: 60000 }

test('a new peer: unknown, its receiver at <url>/webhook/refresh, nothing queued', async (t) => {
  const peer = new Peer('http://10.0.0.2:3000/base/')
  t.equal(peer.endpoint, 'http://10.0.0.2:3000/base/webhook/refresh')
  t.match(peer.snapshot(), { url: 'http://10.0.0.2:3000/base/', state: 'unknown', circuit: 'closed', nextAttemptAt: null, tenantsBehind: 0, lag: [] })
  t.equal(peer.hasPending, false)
  t.equal(peer.active, true)
  t.equal(peer.holdMs, 0)
})

test('the queue keeps the newest entry per tenant, whole, whatever the order of arrival', async (t) => {
  const peer = new Peer('http://p')
  peer.enqueue([change('t1', 2), change('t2', 1)])
  peer.enqueue([change('t1', 1)])
  peer.enqueue([change('t2', 3)])
  t.same(peer.take(), [change('t1', 2), change('t2', 3)])
  t.equal(peer.hasPending, false)

  peer.enqueue([change('t1', 5)])
  peer.requeue([change('t1', 4), change('t3', 1)])
  t.same(peer.take(), [change('t1', 5), change('t3', 1)], 'a requeued entry never replaces a newer one')
})

test('take is bounded by the notice limits in count and bytes', async (t) => {
  const peer = new Peer('http://p')
  peer.enqueue(Array.from({ length: MAX_NOTICE_CHANGES + 5 }, (_, i) => ({ tenant: `t${i}`, revision: 1 })))
  t.equal(peer.take().length, MAX_NOTICE_CHANGES)
  t.equal(peer.take().length, 5)

  const big = (i: number): NoticeChange => ({ tenant: `t${i}`, revision: 1, operation: 'add-permission', group: 'g', permission: 'p'.repeat(256) })
  peer.enqueue(Array.from({ length: 300 }, (_, i) => big(i)))
  const batches: NoticeChange[][] = []
  while (peer.hasPending) batches.push(peer.take())
  t.ok(batches.length > 1, 'split')
  t.equal(batches.flat().length, 300, 'nothing lost')
  for (const batch of batches) t.ok(JSON.stringify(batch).length <= MAX_NOTICE_BYTES, 'each under the byte limit')
})

test('a wait ends acknowledged once deliveries covered every tenant at a high enough revision', async (t) => {
  const peer = new Peer('http://p')
  const waiter = peer.wait([change('t1', 3), change('t2', 1)])
  peer.succeeded('b', 5, [change('t1', 2)])
  t.equal(waiter.pending, true, 'an older revision does not count')
  peer.succeeded('b', 5, [change('t1', 4)])
  t.equal(waiter.pending, true, 't2 still missing')
  peer.succeeded('b', 5, [change('t2', 1)])
  t.equal(await waiter.acked, true)
  t.match(peer.snapshot(), { state: 'up', serverId: 'b', delivered: 3, latencyMs: 5, consecutiveFailures: 0 })
})

test('a failure marks the peer down and releases every wait unacknowledged', async (t) => {
  const peer = new Peer('http://p')
  const first = peer.wait([change('t1', 1)])
  const second = peer.wait([change('t2', 1)])
  t.equal(peer.failed('ECONNREFUSED', breaker), false, 'the first failure does not open the circuit')
  t.same([await first.acked, await second.acked], [false, false])
  t.match(peer.snapshot(), { state: 'down', lastError: 'ECONNREFUSED', consecutiveFailures: 1, failed: 1, circuit: 'closed' })

  const forgotten = peer.wait([change('t1', 2)])
  peer.forget(forgotten)
  t.equal(await forgotten.acked, false)
  peer.succeeded('b', 1, [change('t1', 2)])
  t.equal(forgotten.pending, false, 'a forgotten wait stays ended')

  const missed = peer.wait([change('t1', 3)])
  peer.unresponsive('no acknowledgement within 200 ms')
  t.equal(await missed.acked, false)
  t.match(peer.snapshot(), { state: 'down', lastError: 'no acknowledgement within 200 ms', failed: 1 }, 'a missed deadline is not a failed attempt')
})

test('the circuit opens at the threshold, holds sending, and a failed probe reopens it', async (t) => {
  const peer = new Peer('http://p')
  t.equal(peer.failed('x', breaker), false)
  t.equal(peer.failed('x', breaker), false)
  t.equal(peer.failed('x', breaker), true, 'the third consecutive failure opens it')
  t.match(peer.snapshot(), { circuit: 'open', consecutiveFailures: 3 })
  t.ok(peer.holdMs > 0 && peer.holdMs <= breaker.cooldownMs, 'sending is held for the cool-down')
  t.type(peer.snapshot().nextAttemptAt, 'string')

  peer.status.circuit = 'half-open'
  t.equal(peer.failed('x', breaker), true, 'a failed probe reopens it')
  peer.succeeded('b', 1, [])
  t.match(peer.snapshot(), { circuit: 'closed', consecutiveFailures: 0, nextAttemptAt: null })
  t.equal(peer.holdMs, 0, 'a success lifts the hold')

  t.equal(peer.failed('HTTP 429', breaker, 5000), false)
  t.ok(peer.holdMs > 0 && peer.holdMs <= 5000, 'a Retry-After holds sending too')
})

test('410 Gone: the queue and the waits are dropped for good', async (t) => {
  const peer = new Peer('http://p')
  peer.enqueue([change('t1', 1)])
  const waiter = peer.wait([change('t1', 1)])
  peer.goneForGood('HTTP 410')
  t.equal(peer.gone, true)
  t.equal(peer.hasPending, false)
  t.equal(await waiter.acked, false)
  t.match(peer.snapshot(), { state: 'gone', lastError: 'HTTP 410', failed: 1 })
})

test('the lag lists tenants whose latest revision the peer has not acknowledged, newest first', async (t) => {
  const peer = new Peer('http://p')
  peer.enqueue([change('t1', 1), change('t2', 1)])
  peer.succeeded('b', 1, [change('t1', 1)])
  peer.enqueue([change('t1', 2)])
  peer.enqueue([change('t3', 7)])
  const { tenantsBehind, lag } = peer.snapshot()
  t.equal(tenantsBehind, 3)
  t.same(lag, [
    { tenant: 't3', acked: null, revision: 7 },
    { tenant: 't1', acked: 1, revision: 2 },
    { tenant: 't2', acked: null, revision: 1 }
  ])
  peer.succeeded('b', 1, [change('t1', 2), change('t2', 1), change('t3', 7)])
  t.same(peer.snapshot().lag, [], 'caught up')

  const many = new Peer('http://q')
  many.enqueue(Array.from({ length: 150 }, (_, i) => ({ tenant: `t${i}`, revision: 1 })))
  t.equal(many.snapshot().tenantsBehind, 150)
  t.equal(many.snapshot().lag.length, 100, 'at most 100 listed')
})

test('stopping a peer makes it inactive', async (t) => {
  const peer = new Peer('http://p')
  peer.stop.abort()
  t.equal(peer.active, false)
})

test('a wait naming a tenant twice needs its higher revision', async (t) => {
  const peer = new Peer('http://p')
  const waiter = peer.wait([change('t1', 3), change('t1', 1)])
  peer.succeeded('b', 1, [change('t1', 2)])
  t.equal(waiter.pending, true, 'revision 2 is not enough')
  peer.succeeded('b', 1, [change('t1', 3)])
  t.equal(await waiter.acked, true)
})

test('an acknowledged revision never goes back, and what is acknowledged is not behind', async (t) => {
  const peer = new Peer('http://p')
  peer.enqueue([change('t1', 5)])
  peer.succeeded('b', 1, [change('t1', 5)])
  peer.succeeded('b', 1, [change('t1', 3)])
  peer.enqueue([change('t1', 4)])
  t.same(peer.snapshot().lag, [], 'revision 4 was acknowledged already (5 covers it)')
  peer.enqueue([change('t1', 7)])
  t.same(peer.snapshot().lag, [{ tenant: 't1', acked: 5, revision: 7 }], 'the later, lower reply did not lower it')
  peer.enqueue([change('t1', 6)])
  t.same(peer.snapshot().lag, [{ tenant: 't1', acked: 5, revision: 7 }], 'our revision shown is the highest sent')
  peer.succeeded('b', 1, [change('t1', 6)])
  t.same(peer.snapshot().lag, [{ tenant: 't1', acked: 6, revision: 7 }], 'still behind 7')
})

test('a peer remembers at most 10000 tenants\' lag, the most recently written', async (t) => {
  const peer = new Peer('http://p')
  peer.enqueue(Array.from({ length: 10001 }, (_, i) => ({ tenant: `t${i}`, revision: 1 })))
  const { tenantsBehind, lag } = peer.snapshot()
  t.equal(tenantsBehind, 10000)
  t.equal(lag[0].tenant, 't10000')
})

test('the receiver URL drops every trailing slash of the peer URL', async (t) => {
  t.equal(new Peer('http://p//').endpoint, 'http://p/webhook/refresh')
  t.equal(new Peer('http://p/a/b').endpoint, 'http://p/a/b/webhook/refresh')
})

test('an open circuit and a Retry-After: the later of the two holds', async (t) => {
  const peer = new Peer('http://p')
  const quick = { failureThreshold: 1, cooldownMs: 1000 }
  t.equal(peer.failed('HTTP 503', quick, 3600000), true)
  t.ok(peer.holdMs > 1000, 'the Retry-After is longer than the cool-down')
  const other = new Peer('http://q')
  t.equal(other.failed('HTTP 503', { failureThreshold: 1, cooldownMs: 3600000 }, 1000), true)
  t.ok(other.holdMs > 1000, 'the cool-down is longer than the Retry-After')
  t.equal(other.failed('HTTP 503', { failureThreshold: 1, cooldownMs: 3600000 }, 0), false, 'an open circuit is not opened again by a failure')
})

test('a batch\'s JSON may reach the byte limit exactly, not pass it', async (t) => {
  const sized = (tenant: string, length: number): NoticeChange => ({ tenant, revision: 1, operation: 'add-permission', group: 'g', permission: 'p'.repeat(length) })
  const base = JSON.stringify([sized('a', 0), sized('b', 0)]).length
  const peer = new Peer('http://p')
  peer.enqueue([sized('a', MAX_NOTICE_BYTES - base - 100), sized('b', 100), sized('c', 0)])
  const first = peer.take()
  t.equal(JSON.stringify(first).length, MAX_NOTICE_BYTES, 'two changes of exactly the limit go together')
  t.same(first.map((c) => c.tenant), ['a', 'b'])
  t.same(peer.take().map((c) => c.tenant), ['c'], 'the next one would pass it: the next notice')

  peer.enqueue([sized('a', MAX_NOTICE_BYTES - base - 100), sized('b', 101)])
  t.same(peer.take().map((c) => c.tenant), ['a'], 'one byte over: split')
  t.same(peer.take().map((c) => c.tenant), ['b'])
})

test('revive ends whatever made us give up on a peer, and says whether there was anything', async (t) => {
  const fresh = new Peer('http://p')
  t.equal(fresh.revive(), false, 'a new peer: nothing to revive')

  const down = new Peer('http://p')
  down.unresponsive('no acknowledgement')
  const wake = down.wake
  t.equal(down.revive(), true, 'down (no acknowledgement): revived')
  t.match(down.status, { state: 'unknown', circuit: 'closed', consecutiveFailures: 0 })
  t.equal(wake.signal.aborted, true, 'its waiting loop is woken')
  t.not(down.wake, wake, 'with a fresh signal for the next wait')
  t.equal(down.revive(), false, 'twice: nothing more')

  const open = new Peer('http://p')
  for (let i = 0; i < breaker.failureThreshold; i++) open.failed('HTTP 500', breaker)
  t.match(open.status, { state: 'down', circuit: 'open' })
  t.equal(open.revive(), true)
  t.match(open.snapshot(), { state: 'unknown', circuit: 'closed', consecutiveFailures: 0, nextAttemptAt: null })
  t.equal(open.holdMs, 0)

  const probing = new Peer('http://p')
  probing.status.circuit = 'half-open'
  t.equal(probing.revive(), true, 'a half-open circuit closes')
  t.match(probing.status, { state: 'unknown', circuit: 'closed' })

  const holding = new Peer('http://p')
  holding.succeeded('b', 1, [])
  holding.notBefore = Date.now() + 60_000
  t.equal(holding.revive(), true, 'a hold (Retry-After) ends')
  t.match(holding.status, { state: 'up' }, 'a peer that is not down keeps its state')
  t.equal(holding.holdMs, 0)

  const gone = new Peer('http://p')
  for (let i = 0; i < breaker.failureThreshold; i++) gone.failed('HTTP 500', breaker)
  gone.goneForGood('HTTP 410')
  t.equal(gone.revive(), false, 'gone stays gone, however its circuit was')
  t.match(gone.status, { state: 'gone', circuit: 'open' })
})

test('a change requeued after a newer one was taken replaces an older one queued since', async (t) => {
  const peer = new Peer('http://p')
  peer.enqueue([change('t1', 5)])
  const taken = peer.take()
  peer.enqueue([change('t1', 4)]) // a late write's notice, older than the one in flight
  peer.requeue(taken)
  t.same(peer.take(), [change('t1', 5)])
})

test('a change at the revision the peer acknowledged does not put it behind', async (t) => {
  const peer = new Peer('http://p')
  peer.enqueue([change('t1', 3)])
  peer.succeeded('b', 1, [change('t1', 3)])
  peer.enqueue([change('t1', 3)]) // sent again (a retry of the same write's notice)
  t.match(peer.snapshot(), { tenantsBehind: 0, lag: [] })
})
