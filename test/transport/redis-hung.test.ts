/**
 * redis: a hung server (a redis-server of the test's own, SIGSTOPped: its sockets stay open, nothing
 * is answered). The subscriber's PING probe goes unanswered within `probeTimeoutMs`: the subscriber
 * is reported down and dropped; writes keep committing; once the server answers again, ioredis
 * reconnects, the transport subscribes again and resyncs every cached tenant.
 */
import t from 'tap'
import { ownRedisServer, randomName, startBrokerNodes, until } from '../helpers/brokers.js'

t.test('a hung server: the probe drops the subscriber, the reconnect resyncs', async (t) => {
  const server = await ownRedisServer(t)
  const { port } = new URL(server.url)
  const [a, b] = await startBrokerNodes(t, 2, {
    type: 'redis',
    // An options object: its own retry strategy is honoured.
    connection: { host: '127.0.0.1', port: Number(port), retryStrategy: () => 50, connectTimeout: 500 },
    channel: randomName(),
    probeIntervalMs: 100,
    probeTimeoutMs: 100
  })
  await a.app.policyCache.createGroup('t1', 'readers')
  await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
  await until('b is at revision 2', async () => { await b.app.policyCache.warm(['t1']); return await b.app.policyCache.revision('t1') === 2 })

  server.pause()
  const down = await until('b noticed the hung server', async () => { const s = await b.transport(); return s.state === 'down' && s })
  t.match(down.lastError, /the probe of the subscriber connection: no answer within 100 ms/)
  t.equal((await b.app.inject({ url: '/health' })).json().status, 'degraded')
  t.equal((await a.app.policyCache.assignUser('t1', 'readers', 'alice')).changed, true, 'the write committed')

  server.resume()
  await until('b is subscribed again', async () => { const s = await b.transport(); return s.state === 'up' && s.subscriptions >= 2 }, 10000)
  await until('b allows alice', () => b.app.policyCache.checkSync('t1', 'alice', 'documents:read'), 5000)
  t.equal(await b.app.policyCache.revision('t1'), 3)
})
