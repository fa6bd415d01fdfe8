/**
 * nats: any user of the broker can publish on the subject. A forged message (no valid signature), a
 * tampered genuine one and a garbage one apply nothing they carry: at most the tenants named read
 * the changelog — so a change really committed without a notice is picked up, the forged one is
 * not. A replayed genuine envelope is dropped (test/helpers/transport-scenarios.ts); a forged reply
 * does not count as an acknowledgement.
 */
import t from 'tap'
import { unreachable } from '../helpers/databases.js'
import { NATS_URL, outsideWriter, randomName, reachable, startBrokerNodes } from '../helpers/brokers.js'
import { natsClient, record } from '../helpers/nats-client.js'
import { forgedIsAHint, tamperedIsAHint, type Forger } from '../helpers/transport-scenarios.js'

if (!await reachable(NATS_URL)) {
  unreachable(t, 'NATS', NATS_URL)
} else {
  t.test('a forged message applies nothing it carries; it only makes the receiver read the changelog', async (t) => {
    const subject = randomName()
    const nodes = await startBrokerNodes(t, 2, { type: 'nats', servers: NATS_URL, subject })
    const nc = await natsClient(t, NATS_URL)
    await forgedIsAHint(t, nodes, outsideWriter(t, nodes[0].file), { publish: async (raw) => { nc.publish(subject, raw) } })
  })

  t.test('a tampered envelope is a hint, garbage and a replay are dropped, a forged reply is no acknowledgement', async (t) => {
    const subject = randomName()
    const nodes = await startBrokerNodes(t, 2, { type: 'nats', servers: NATS_URL, subject })
    const nc = await natsClient(t, NATS_URL)
    const forger: Forger = { publish: async (raw) => { nc.publish(subject, raw) } }
    await tamperedIsAHint(t, nodes, forger, await record(nc, subject))

    // A broker user answering every notice unsigned, under a made-up serverId: not an acknowledgement.
    nc.subscribe(subject, { callback: (_err, msg) => { msg.respond(JSON.stringify({ serverId: 'ghost', revisions: { t1: 99 } })) } })
    await nc.flush()
    t.same((await nodes[0].app.policyCache.assignUser('t1', 'readers', 'carol')).peers, { acked: 1, total: 1 }, 'only b counts')
  })
}
