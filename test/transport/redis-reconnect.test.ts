/**
 * redis: the subscriber connection killed (`CLIENT KILL TYPE pubsub`), and the server itself stopped
 * mid-load and restarted (a redis-server of the test's own, on a free port: the shared scenario of
 * test/helpers/transport-scenarios.ts). ioredis reconnects; the transport subscribes again and
 * resyncs every cached tenant on every resubscribe — with the periodic sync off, so nothing else
 * could heal a lost message — and writes keep committing.
 */
import t from 'tap'
import { outsideWriter, ownRedisServer, randomName, startBrokerNodes, until } from '../helpers/brokers.js'
import { redisClient } from '../helpers/redis-client.js'
import { reconnectUnderLoad } from '../helpers/transport-scenarios.js'

t.test('a killed subscriber resubscribes and resyncs: a change it had no message for is picked up', async (t) => {
  const server = await ownRedisServer(t)
  const [a, b] = await startBrokerNodes(t, 2, { type: 'redis', connection: server.url, channel: randomName() })
  await a.app.policyCache.createGroup('t1', 'readers')
  await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
  await until('b is at revision 2', async () => { await b.app.policyCache.warm(['t1']); return await b.app.policyCache.revision('t1') === 2 })

  // A change committed without any message (a writer outside the plugin): only a resync can find it.
  await outsideWriter(t, a.file).write('t1', { op: 'assign-user', group: 'readers', user: 'silent' }, 'outside')
  t.equal(b.app.policyCache.checkSync('t1', 'silent', 'documents:read'), false)

  const admin = await redisClient(t, server.url)
  t.ok(Number(await admin.client('KILL', 'TYPE', 'pubsub')) >= 2, 'both subscribers killed')
  for (const node of [a, b]) {
    await until(`${node.serverId} subscribed again`, async () => { const s = await node.transport(); return s.subscriptions === 2 && s.state === 'up' }, 10000)
  }
  await until('b picked up the silent change by its resync', () => b.app.policyCache.checkSync('t1', 'silent', 'documents:read'), 5000)

  await a.app.policyCache.assignUser('t1', 'readers', 'alice')
  await until('b allows alice through the new subscription', () => b.app.policyCache.checkSync('t1', 'alice', 'documents:read'))
})

t.test('the server stopped mid-load and restarted: writes keep committing, every instance resyncs on its resubscribe', async (t) => {
  const server = await ownRedisServer(t)
  const nodes = await startBrokerNodes(t, 3, { type: 'redis', connection: server.url, channel: randomName(), probeIntervalMs: 200 })
  await reconnectUnderLoad(t, { nodes, outside: outsideWriter(t, nodes[0].file), cut: server.stop, restore: server.start })
})

t.test('a PUBLISH that cannot be sent fails after the retries; the write committed and the resync heals', async (t) => {
  const server = await ownRedisServer(t)
  const { port } = new URL(server.url)
  const [a, b] = await startBrokerNodes(t, 2, {
    type: 'redis',
    // An options object: its own retry strategy and retry limit are honoured.
    connection: { host: '127.0.0.1', port: Number(port), retryStrategy: () => 50, maxRetriesPerRequest: 1 },
    channel: randomName()
  })
  await a.app.policyCache.createGroup('t1', 'readers')
  await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
  await until('b is at revision 2', async () => { await b.app.policyCache.warm(['t1']); return await b.app.policyCache.revision('t1') === 2 })

  await server.stop()
  t.same((await a.app.policyCache.assignUser('t1', 'readers', 'alice')).peers, { acked: 0, total: 0 }, 'the write committed and answered')
  const failed = await until('the PUBLISH failed', async () => { const s = await a.transport(); return /max retries/i.test(String(s.lastError)) && s })
  t.equal(failed.published, 3, 'counted as sent: it was handed to Redis')

  await server.start()
  await until('b allows alice after its resync', () => b.app.policyCache.checkSync('t1', 'alice', 'documents:read'), 10000)
})
