/**
 * BrokerSubscription on its own (lib/broadcast/subscription.ts): the status before and after a
 * subscription, the resync on every (re)subscribe (a failing one logged, not thrown), a loss, the
 * probe timer (again, stopped by `again`, failed, none after close), closing once; and `within`.
 */
import { mock } from 'node:test'
import t from 'tap'
import { parseSecret } from '../../lib/broadcast/signature.js'
import { BrokerSubscription, describe, within } from '../../lib/broadcast/subscription.js'
import type { TransportSink } from '../../lib/broadcast/transport.js'

// The probe's and within's timers are unref()ed: something must keep the process alive meanwhile.
const alive = setInterval(() => {}, 1000)
t.teardown(() => clearInterval(alive))

const keys = [parseSecret('subscription-test-secret-long-enough', 'test')]

function subscription (): { sub: BrokerSubscription, logs: Array<[string, object, string]> } {
  const logs: Array<[string, object, string]> = []
  const record = (level: string) => (obj: object, msg: string): void => { logs.push([level, obj, msg]) }
  const sub = new BrokerSubscription({
    type: 'redis',
    acknowledged: false,
    channel: 'ch',
    logField: 'subject',
    resubscribedMessage: 'back again',
    keys,
    serverId: 'me',
    log: { debug: record('debug'), info: record('info'), warn: record('warn') }
  })
  return { sub, logs }
}

function sink (resubscribed: () => Promise<void>): TransportSink {
  return { deliver: async () => ({}), hint: async () => {}, resubscribed }
}

t.test('status before and after subscribing; every subscribe resyncs, a failing resync is logged', async (t) => {
  const { sub, logs } = subscription()
  t.same(sub.status(), { type: 'redis', state: 'connecting', acknowledged: false, channel: 'ch', subscribedAt: null, subscriptions: 0, lastError: null, published: 0, received: 0, hints: 0, dropped: 0 })
  let resyncs = 0
  const inbox = sub.open(sink(async () => { if (++resyncs === 2) throw new Error('database away') }))
  t.equal(await inbox.receive('garbage'), 'invalid', 'the inbox counts into the status')
  logs.length = 0
  await sub.subscribed()
  t.match(sub.status(), { state: 'up', subscriptions: 1, subscribedAt: String, dropped: 1 })
  t.same(logs, [], 'the first subscription is not logged')

  sub.lost('gone', 'socket closed')
  t.match(sub.status(), { state: 'down', lastError: 'socket closed' })
  t.same(logs.pop(), ['warn', { subject: 'ch', reason: 'socket closed' }, 'gone'])
  sub.failed(new Error('refused'))
  sub.lost('still gone')
  t.equal(sub.status().lastError, 'refused', 'the reason defaults to the last failure')

  await sub.subscribed()
  t.equal(resyncs, 2)
  t.match(logs, [['warn'], ['info', { subject: 'ch', subscriptions: 2 }, 'back again'], ['warn', {}, /resync after subscribing failed/]])
  t.equal(sub.status().state, 'up', 'up even when its resync failed: the sync heals')
})

t.test('the probe: again while it answers and `again` says so; `failed` when it rejects', async (t) => {
  const { sub } = subscription()
  let checks = 0
  await new Promise<void>((resolve) => {
    sub.probe(1, async () => { checks++ }, () => t.fail('no failure'), () => { if (checks < 3) return true; resolve(); return false })
  })
  t.equal(checks, 3, 'stopped when `again` said no')

  const failure = await new Promise<unknown>((resolve) => { sub.probe(1, () => Promise.reject(new Error('no answer')), resolve) })
  t.equal(describe(failure), 'no answer')

  // By default, again and again (until closed).
  t.equal(sub.closing, false)
  let rounds = 0
  await new Promise<void>((resolve) => {
    sub.probe(1, async () => { if (++rounds === 2) { sub.close(); resolve() } }, () => t.fail('no failure'))
  })
  t.equal(rounds, 2)
})

t.test('a probe armed again replaces the pending one; close stops the pending one', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
  const { sub } = subscription()
  const checked: string[] = []
  const arm = (name: string): void => {
    sub.probe(100, async () => { checked.push(name) }, () => t.fail('no failure'), () => false)
  }
  arm('first')
  arm('second')
  mock.timers.tick(100)
  t.same(checked, ['second'], 'the first timer was cleared')
  arm('third')
  sub.close()
  mock.timers.tick(1000)
  t.same(checked, ['second'], 'nothing after close')
})

t.test('closed while a check is under way: the probe is not scheduled again', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
  const { sub } = subscription()
  let checks = 0
  let release = (): void => {}
  let asked = (): void => {}
  const askedAgain = new Promise<void>((resolve) => { asked = resolve })
  sub.probe(100, () => { checks++; return new Promise<void>((resolve) => { release = resolve }) }, () => t.fail('no failure'), () => { asked(); return true })
  mock.timers.tick(100)
  t.equal(checks, 1, 'the check runs')
  t.equal(sub.close(), true)
  t.equal(sub.close(), false, 'once')
  t.equal(sub.status().state, 'closed')
  t.equal(sub.closing, true)
  release()
  await askedAgain
  mock.timers.tick(1000)
  t.equal(checks, 1, 'not again after close')
})

t.test('a connection that comes back after close: still closed, nothing resynced or counted', async (t) => {
  const { sub, logs } = subscription()
  let resyncs = 0
  sub.open(sink(async () => { resyncs++ }))
  await sub.subscribed()
  sub.close()
  await sub.subscribed()
  t.match(sub.status(), { state: 'closed', subscriptions: 1 })
  t.equal(resyncs, 1, 'only the subscription before close resynced')
  t.same(logs, [], 'nothing logged')
})

t.test('within: the answer, or a rejection naming what did not answer', async (t) => {
  t.equal(await within(Promise.resolve(7), 1000, 'x'), 7)
  await t.rejects(within(new Promise(() => {}), 5, 'the probe'), /the probe: no answer within 5 ms/)
  t.equal(describe('plain'), 'plain')
})
