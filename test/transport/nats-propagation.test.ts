/**
 * nats: three in-process instances on one subject. A write on one is visible on the others through
 * the subject alone (the sync is off), applied from the change the notice carries; the write is
 * acknowledged by every live instance (acked === total) with one publish; each instance drops its
 * own messages; /health and /servers report the transport (test/helpers/transport-scenarios.ts).
 * An instance that closed is no longer waited for.
 */
import t from 'tap'
import { unreachable } from '../helpers/databases.js'
import { NATS_URL, randomName, reachable, startBrokerNodes, until } from '../helpers/brokers.js'
import { propagation, unchangedSendsNothing } from '../helpers/transport-scenarios.js'

if (!await reachable(NATS_URL)) {
  unreachable(t, 'NATS', NATS_URL)
} else {
  const transport = () => ({ type: 'nats' as const, servers: NATS_URL, subject: randomName() })

  t.test('a write is visible on the others when it returns, acknowledged by each', async (t) => {
    await propagation(t, { type: 'nats', acknowledged: true }, await startBrokerNodes(t, 3, transport()))
  })

  t.test('an instance that closed is no longer waited for', async (t) => {
    const [a, b, c] = await startBrokerNodes(t, 3, transport(), { ackTimeoutMs: 2000 })
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
    const [a] = await startBrokerNodes(t, 1, transport())
    t.same((await a.app.policyCache.createGroup('t1', 'g')).peers, { acked: 0, total: 0 })
    t.equal((await a.transport()).published, 1)
  })

  t.test('an unchanged write sends nothing', async (t) => {
    await unchangedSendsNothing(t, (await startBrokerNodes(t, 1, transport()))[0])
  })
}
