/**
 * nats: the broker stopped mid-load and restarted (a nats-server of the test's own, on a free port):
 * the shared scenario (test/helpers/transport-scenarios.ts) — writes keep committing, nats.js
 * reconnects by itself, and on the reconnect every instance resyncs every cached tenant, so each
 * converges from its resubscribe (the periodic sync is off) and nothing committed is lost. Then the
 * new subscriptions carry notices and acknowledgements again.
 */
import t from 'tap'
import { outsideWriter, ownNatsServer, randomName, startBrokerNodes, until } from '../helpers/brokers.js'
import { reconnectUnderLoad } from '../helpers/transport-scenarios.js'

t.test('the broker stopped mid-load and restarted: writes keep committing, every instance resyncs on its resubscribe', async (t) => {
  const server = await ownNatsServer(t)
  const nodes = await startBrokerNodes(t, 3, {
    type: 'nats',
    servers: server.url,
    subject: randomName(),
    probeIntervalMs: 200,
    connection: { reconnectTimeWait: 100 }
  }, { ackTimeoutMs: 500 })
  await reconnectUnderLoad(t, { nodes, outside: outsideWriter(t, nodes[0].file), cut: server.stop, restore: server.start })

  const [a] = nodes
  const after = await until('a write is acknowledged by both again', async () => {
    const written = await a.app.policyCache.assignUser('t1', 'readers', `late${Date.now()}`)
    return written.peers.acked === 2 && written
  })
  t.same(after.peers, { acked: 2, total: 2 })
})
