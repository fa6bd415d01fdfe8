/**
 * nats: three in-process instances on one subject. A write on one is visible on the others through
 * the subject alone (the sync is off), applied from the change the notice carries; the write is
 * acknowledged by every live instance (acked === total) with one publish; each instance drops its
 * own messages; /health and /servers report the transport.
 */
import t from 'tap'
import { unreachable } from '../helpers/databases.js'
import { NATS_URL, randomName, reachable, startBrokerNodes, until } from '../helpers/brokers.js'

if (!await reachable(NATS_URL)) {
  unreachable(t, 'NATS', NATS_URL)
} else {
  t.test('a write is visible on the others when it returns, acknowledged by each', async (t) => {
    const [a, b, c] = await startBrokerNodes(t, 3, { type: 'nats', servers: NATS_URL, subject: randomName() })
    await a.app.policyCache.createGroup('t1', 'readers')
    await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
    await b.app.policyCache.warm(['t1'])
    await c.app.policyCache.warm(['t1'])
    const before = b.app.policyCache.stats().carriedCatchUps

    const written = await a.app.policyCache.assignUser('t1', 'readers', 'alice')
    t.same(written.peers, { acked: 2, total: 2 }, 'both other instances answered')
    t.equal(written.revision, 3)
    for (const node of [b, c]) {
      t.equal(node.app.policyCache.checkSync('t1', 'alice', 'documents:read'), true, `${node.serverId} allows alice when the write returns`)
      t.equal(await node.app.policyCache.revision('t1'), 3)
    }
    t.ok(b.app.policyCache.stats().carriedCatchUps > before, 'applied from the carried change, without a changelog read')

    const writer = await a.transport()
    t.equal(writer.type, 'nats')
    t.equal(writer.state, 'up')
    t.equal(writer.acknowledged, true)
    t.equal(writer.published, 3, 'one message per effective write')
    await until('the writer dropped its own messages', async () => (await a.transport()).dropped >= 3)
    const receiver = await b.transport()
    t.ok(receiver.received >= 1)
    t.equal(receiver.hints, 0, 'every notice verified')

    const health = (await b.app.inject({ url: '/health' })).json()
    t.same(health.transport, { type: 'nats', state: 'up' })
    t.equal(health.status, 'ok')
  })

  t.test('an instance that closed is no longer waited for', async (t) => {
    const [a, b, c] = await startBrokerNodes(t, 3, { type: 'nats', servers: NATS_URL, subject: randomName() }, { ackTimeoutMs: 2000 })
    t.same((await a.app.policyCache.createGroup('t1', 'g')).peers, { acked: 2, total: 2 })
    await c.app.close()
    // c said it leaves (a message that may still be on its way to a): a write soon waits for b only.
    let n = 0
    const written = await until('a no longer counts c', async () => {
      const outcome = await a.app.policyCache.assignUser('t1', 'g', `user${n++}`)
      return outcome.peers.total === 1 && outcome
    })
    t.same(written.peers, { acked: 1, total: 1 })
    t.equal(await b.app.policyCache.revision('t1'), written.revision, 'b is at the write\'s revision')
  })

  t.test('alone on the subject, a write waits for nobody', async (t) => {
    const [a] = await startBrokerNodes(t, 1, { type: 'nats', servers: NATS_URL, subject: randomName() })
    t.same((await a.app.policyCache.createGroup('t1', 'g')).peers, { acked: 0, total: 0 })
    t.equal((await a.transport()).published, 1)
  })

  t.test('an unchanged write sends nothing', async (t) => {
    const [a] = await startBrokerNodes(t, 1, { type: 'nats', servers: NATS_URL, subject: randomName() })
    await a.app.policyCache.createGroup('t1', 'g')
    t.equal((await a.app.policyCache.createGroup('t1', 'g')).changed, false)
    t.equal((await a.transport()).published, 1)
  })
}
