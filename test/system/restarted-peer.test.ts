/**
 * A peer restarted while the writer's circuit breaker is open for it is back in the send set at
 * once: on listening it announces itself to its peers (a signed notice without changes), and a
 * writer that had given up on it revives it — circuit closed, its queue delivered, the next write
 * waited for — instead of leaving it out for the rest of the cool-down (~26 s under load).
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { test } from 'tap'
import policyCache from '../../lib/plugin.js'
import { SECRET, tempDir } from '../helpers/app.js'
import { freePorts } from '../../examples/demo.js'

test('a restarted peer acknowledges the next write', async (t) => {
  const file = join(tempDir(t), 'policy.db')
  const [portA, portB] = await freePorts(2)
  const urlA = `http://127.0.0.1:${portA}`
  const urlB = `http://127.0.0.1:${portB}`
  const start = async (serverId: string, port: number, self: string, peer: string): Promise<FastifyInstance> => {
    const app = Fastify()
    await app.register(policyCache, {
      sqliteFile: file,
      serverId,
      publicUrl: self,
      peers: [peer],
      webhookSecret: SECRET,
      syncIntervalMs: 0,
      ackTimeoutMs: 10000,
      retry: { retries: 0 },
      // One failure opens the circuit for longer than the test: only the announcement can close it.
      circuitBreaker: { failureThreshold: 1, cooldownMs: 600000 }
    })
    await app.listen({ port, host: '127.0.0.1' })
    return app
  }
  const a = await start('a', portA, urlA, urlB)
  t.teardown(() => a.close())
  let b = await start('b', portB, urlB, urlA)
  t.teardown(() => b.close())

  t.match(await a.policyCache.createGroup('t1', 'g'), { revision: 1, peers: { acked: 1, total: 1 } })

  await b.close()
  t.match(await a.policyCache.createGroup('t1', 'h'), { revision: 2, peers: { acked: 0, total: 1 } }, 'b is down')
  t.match(a.policyCache.peers()[0], { state: 'down', circuit: 'open' }, 'the circuit is open for 10 minutes')

  b = await start('b', portB, urlB, urlA)
  // b announced itself on listening: a revives it and delivers what it queued (revision 2).
  for (let i = 0; i < 500 && a.policyCache.peers()[0].state !== 'up'; i++) await sleep(10)
  t.match(a.policyCache.peers()[0], { state: 'up', circuit: 'closed', consecutiveFailures: 0 }, 'back in the send set')

  await b.policyCache.warm(['t1'])
  t.match(await a.policyCache.createGroup('t1', 'i'), { revision: 3, peers: { acked: 1, total: 1 } }, 'the next write is acknowledged')
  t.same((await b.policyCache.tenant('t1')).revision, 3, 'and b answers from it')
})
