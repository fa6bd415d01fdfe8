/**
 * redis: three in-process instances on one channel. A write on one is visible on the others through
 * the channel alone (the sync is off), applied from the change the notice carries; the write answers
 * without acknowledgements; each instance drops its own messages; /health and /servers report it.
 */
import t from 'tap'
import { unreachable } from '../helpers/databases.js'
import { randomName, reachable, REDIS_URL, startBrokerNodes, until } from '../helpers/brokers.js'

if (!await reachable(REDIS_URL)) {
  unreachable(t, 'Redis', REDIS_URL)
} else {
  t.test('a write on one instance is visible on the others, carried by the notice', async (t) => {
    const [a, b, c] = await startBrokerNodes(t, 3, { type: 'redis', connection: REDIS_URL, channel: randomName() })
    await a.app.policyCache.createGroup('t1', 'readers')
    await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
    await b.app.policyCache.warm(['t1'])
    await c.app.policyCache.warm(['t1'])
    const before = b.app.policyCache.stats().carriedCatchUps

    const written = await a.app.policyCache.assignUser('t1', 'readers', 'alice')
    t.same(written.peers, { acked: 0, total: 0 }, 'no acknowledgements on redis')
    t.equal(written.revision, 3)
    for (const node of [b, c]) {
      await until(`${node.serverId} allows alice`, () => node.app.policyCache.checkSync('t1', 'alice', 'documents:read'))
      t.equal(await node.app.policyCache.revision('t1'), 3, `${node.serverId} is at the write's revision`)
    }
    t.ok(b.app.policyCache.stats().carriedCatchUps > before, 'applied from the carried change, without a changelog read')

    const writer = await a.transport()
    t.equal(writer.type, 'redis')
    t.equal(writer.state, 'up')
    t.equal(writer.acknowledged, false)
    t.equal(writer.published, 3, 'one message per effective write')
    await until('the writer dropped its own messages', async () => (await a.transport()).dropped >= 3)
    const receiver = await until('b counted the notices', async () => { const s = await b.transport(); return s.received >= 1 && s })
    t.equal(receiver.hints, 0, 'every notice verified')

    const health = (await b.app.inject({ url: '/health' })).json()
    t.same(health.transport, { type: 'redis', state: 'up' })
    t.equal(health.status, 'ok')
    t.same((await b.app.inject({ url: '/servers' })).json().peers, [], 'no peers to wait for')
  })

  t.test('an unchanged write sends nothing', async (t) => {
    const [a] = await startBrokerNodes(t, 1, { type: 'redis', connection: REDIS_URL, channel: randomName() })
    await a.app.policyCache.createGroup('t1', 'g')
    t.equal((await a.app.policyCache.createGroup('t1', 'g')).changed, false)
    t.equal((await a.transport()).published, 1)
  })
}
