/**
 * nats: the broker killed under load and restarted (a nats-server of the test's own, on a free
 * port). Writes keep committing meanwhile; nats.js reconnects by itself; on the reconnect every
 * instance resyncs every cached tenant, so each one converges right after the resubscribe — with
 * the periodic sync off, so nothing else could heal it — and nothing acknowledged is lost.
 */
import t from 'tap'
import { ownNatsServer, randomName, startBrokerNodes, until } from '../helpers/brokers.js'

t.test('a restarted broker: writes keep committing, every instance converges after the resubscribe', async (t) => {
  const server = await ownNatsServer(t)
  const [a, b, c] = await startBrokerNodes(t, 3, {
    type: 'nats',
    servers: server.url,
    subject: randomName(),
    probeIntervalMs: 200,
    connection: { reconnectTimeWait: 100 }
  }, { ackTimeoutMs: 500 })
  await a.app.policyCache.createGroup('t1', 'readers')
  await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
  await b.app.policyCache.warm(['t1'])
  await c.app.policyCache.warm(['t1'])
  const acknowledged: string[] = []
  for (const user of ['alice', 'bob']) {
    const written = await a.app.policyCache.assignUser('t1', 'readers', user)
    t.same(written.peers, { acked: 2, total: 2 }, `${user}: acknowledged by both`)
    acknowledged.push(user)
  }

  await server.stop()
  await until('b noticed the loss', async () => (await b.transport()).state === 'down')
  t.equal((await b.app.inject({ url: '/health' })).json().status, 'degraded', '/health is degraded while the broker is away')

  // Writes keep committing: the database is the source of truth, the notice only a hint.
  const during = Array.from({ length: 5 }, (_, i) => `user${i}`)
  for (const user of during) {
    const written = await a.app.policyCache.assignUser('t1', 'readers', user)
    t.equal(written.changed, true, `${user} committed`)
    t.equal(written.peers.acked, 0, 'nobody could acknowledge it')
  }
  // While the broker is away, a write on c: its own notice is buffered by nats.js at most.
  await c.app.policyCache.assignUser('t1', 'readers', 'carol')

  await server.start()
  for (const node of [a, b, c]) {
    await until(`${node.serverId} resubscribed`, async () => { const s = await node.transport(); return s.subscriptions === 2 && s.state === 'up' }, 15000)
  }
  const resubscribedAt = Date.now()
  for (const node of [a, b, c]) {
    await until(`${node.serverId} converged`, async () => await node.app.policyCache.revision('t1') === 10, 5000)
    for (const user of [...acknowledged, ...during, 'carol']) {
      t.equal(node.app.policyCache.checkSync('t1', user, 'documents:read'), true, `${user} allowed on ${node.serverId}`)
    }
  }
  t.comment(`all converged ${Date.now() - resubscribedAt} ms after the resubscribes were observed`)
  t.equal((await b.app.inject({ url: '/health' })).json().status, 'ok')

  // The new subscriptions carry notices and acknowledgements again.
  const after = await until('a write is acknowledged by both again', async () => {
    const written = await a.app.policyCache.assignUser('t1', 'readers', `late${Date.now()}`)
    return written.peers.acked === 2 && written
  })
  t.same(after.peers, { acked: 2, total: 2 })
})
