/**
 * nats with membership on: a write waits for the live member set (the database's), not for whoever
 * is seen on the subject. A live member that is not on the subject (here an instance on the webhook
 * transport) is counted and waited for, up to `ackTimeoutMs`; one that left is not.
 */
import t from 'tap'
import { unreachable } from '../helpers/databases.js'
import { NATS_URL, randomName, reachable, startBrokerNode, startBrokerNodes, until } from '../helpers/brokers.js'

if (!await reachable(NATS_URL)) {
  unreachable(t, 'NATS', NATS_URL)
} else {
  t.test('the live members are the instances a write waits for', async (t) => {
    const subject = randomName()
    const membership = { heartbeatMs: 50, ttlMs: 1000, pollMs: 20 }
    const options = (n: number) => ({ publicUrl: `http://127.0.0.1:${40000 + n}`, membership, ackTimeoutMs: 300 })
    const [a] = await startBrokerNodes(t, 1, { type: 'nats', servers: NATS_URL, subject }, options(1))
    const b = await startBrokerNode(t, a.file, 'n2', { type: 'nats', servers: NATS_URL, subject }, options(2))
    await a.app.policyCache.createGroup('t1', 'g')
    await b.app.policyCache.warm(['t1'])

    let n = 0
    const both = await until('a waits for b, its one live member', async () => {
      const written = await a.app.policyCache.assignUser('t1', 'g', `user${n++}`)
      return written.peers.total === 1 && written
    })
    t.same(both.peers, { acked: 1, total: 1 })

    // A live member that does not listen on the subject: counted, waited for, never acknowledging.
    const c = await startBrokerNode(t, a.file, 'n3', 'webhook', options(3))
    const three = await until('a counts c once it is a member', async () => {
      const written = await a.app.policyCache.assignUser('t1', 'g', `user${n++}`)
      return written.peers.total === 2 && written
    })
    t.same(three.peers, { acked: 1, total: 2 }, 'c is a member but not on the subject: not acknowledged')

    await c.app.close()
    const left = await until('a no longer waits for c once it left', async () => {
      const written = await a.app.policyCache.assignUser('t1', 'g', `user${n++}`)
      return written.peers.total === 1 && written
    })
    t.same(left.peers, { acked: 1, total: 1 })
    t.equal(await b.app.policyCache.revision('t1'), left.revision, 'b (cached) is at the write\'s revision when it returns')
  })
}
