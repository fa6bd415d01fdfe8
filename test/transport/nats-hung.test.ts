/**
 * nats: a hung broker (a nats-server of the test's own, SIGSTOPped: its sockets stay open, nothing is
 * answered). The presence probe is not received back within `probeTimeoutMs`: the subscription is
 * reported down (and /health degraded) though nats.js still holds the connection (its own pings are
 * slowed down here so that it does not reconnect first). Writes keep committing. Once the broker
 * answers again, the probe comes back and every cached tenant is resynced.
 */
import t from 'tap'
import { ownNatsServer, randomName, startBrokerNodes, until } from '../helpers/brokers.js'

t.test('a hung broker: the probe notices, and its return resyncs', async (t) => {
  const server = await ownNatsServer(t)
  const [a, b] = await startBrokerNodes(t, 2, {
    type: 'nats',
    servers: server.url,
    subject: randomName(),
    probeIntervalMs: 100,
    probeTimeoutMs: 100,
    connection: { pingInterval: 600000 }
  }, { ackTimeoutMs: 200 })
  await a.app.policyCache.createGroup('t1', 'readers')
  await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
  await b.app.policyCache.warm(['t1'])

  server.pause()
  const down = await until('b noticed the hung broker', async () => { const s = await b.transport(); return s.state === 'down' && s })
  t.match(down.lastError, /the presence probe was not answered within 100 ms/)
  t.equal((await b.app.inject({ url: '/health' })).json().status, 'degraded')
  const written = await a.app.policyCache.assignUser('t1', 'readers', 'alice')
  t.equal(written.changed, true, 'the write committed')
  t.equal(written.peers.acked, 0, 'nobody could acknowledge it')

  server.resume()
  const up = await until('b is up again', async () => { const s = await b.transport(); return s.state === 'up' && s.subscriptions === 2 && s })
  t.equal(up.subscriptions, 2, 'the probe\'s return counts as a resubscribe')
  await until('b allows alice', () => b.app.policyCache.checkSync('t1', 'alice', 'documents:read'), 5000)
  t.equal(await b.app.policyCache.revision('t1'), 3)
})
