/** BroadcasterOptions.observe: one event per delivery, failed attempt, retry and give-up; a throwing observer is harmless. */
import { once } from 'node:events'
import { createServer } from 'node:net'
import Fastify from 'fastify'
import { test } from 'tap'
import { Broadcaster } from '../../lib/broadcast/broadcaster.js'
import webhookRoutes from '../../lib/broadcast/receiver.js'
import { parseSecret } from '../../lib/broadcast/signature.js'
import type { DeliveryEvent } from '../../lib/broadcast/status.js'

const key = parseSecret('observe-test-secret-0123456789', 'webhookSecret')
const log = { debug () {}, info () {}, warn () {} }

test('observe: delivered with latency and the receiver\'s revisions; failed, retry, given-up for a dead peer', async (t) => {
  const app = Fastify()
  await app.register(webhookRoutes, { keys: [key], serverId: 'receiver', handleNotice: async (notice) => Object.fromEntries(notice.entries.map((e) => [e.tenant, e.revision - 1])) })
  const live = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const closed = createServer()
  closed.listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const dead = `http://127.0.0.1:${(closed.address() as { port: number }).port}`
  closed.close()
  await once(closed, 'close')

  const events: DeliveryEvent[] = []
  let gaveUp!: () => void
  const givenUp = new Promise<void>((resolve) => { gaveUp = resolve })
  let wasDelivered!: () => void
  const delivered = new Promise<void>((resolve) => { wasDelivered = resolve })
  const broadcaster = new Broadcaster({
    serverId: 'sender',
    keys: [key],
    peers: [live, dead],
    retry: { retries: 2, minDelayMs: 1, maxDelayMs: 2 },
    // Wait for nobody: the events are awaited instead, whatever the machine's load.
    ackTimeoutMs: 0,
    log,
    observe: (event) => {
      events.push(event)
      if (event.kind === 'given-up') gaveUp()
      if (event.kind === 'delivered') wasDelivered()
      throw new Error('a broken observer must not break deliveries')
    }
  })
  t.teardown(() => broadcaster.close())

  await broadcaster.notify([{ tenant: 't1', revision: 3, operation: 'assign-user' }])
  await Promise.all([givenUp, delivered])

  const deliveries = events.filter((e) => e.kind === 'delivered')
  t.equal(deliveries.length, 1)
  t.match(deliveries[0], { peer: live, changes: [{ tenant: 't1', revision: 3 }], revisions: { t1: 2 } })
  t.ok((deliveries[0].latencyMs ?? -1) >= 0, 'with its latency')
  const ofDead = events.filter((e) => e.peer === dead).map((e) => e.kind)
  t.same(ofDead, ['failed', 'retry', 'failed', 'retry', 'failed', 'given-up'])
  t.ok(events.filter((e) => e.kind === 'failed').every((e) => typeof e.latencyMs === 'number'))
  t.match(broadcaster.status()[0], { state: 'up', delivered: 1 }, 'the throwing observer broke nothing')
})
