/**
 * nats: a notice whose envelope is over `maxPayloadBytes` goes out with tenant + revision only,
 * still signed; the receiver reads the changelog instead of applying a carried change, and still
 * acknowledges the write (it is visible there when the write returns).
 */
import t from 'tap'
import { ENVELOPE_VERSION } from '../../lib/broadcast/envelope.js'
import { unreachable } from '../helpers/databases.js'
import { NATS_URL, randomName, reachable, startBrokerNodes, until } from '../helpers/brokers.js'
import { natsClient, record } from '../helpers/nats-client.js'

if (!await reachable(NATS_URL)) {
  unreachable(t, 'NATS', NATS_URL)
} else {
  t.test('an envelope over the limit carries tenant + revision; the receiver reads the changelog', async (t) => {
    const subject = randomName()
    const [a, b] = await startBrokerNodes(t, 2, { type: 'nats', servers: NATS_URL, subject, maxPayloadBytes: 512 })
    const wire = await record(await natsClient(t, NATS_URL), subject)
    const tenant = 'T'.repeat(128)
    const group = 'G'.repeat(128)
    const user = 'U'.repeat(128)
    await a.app.policyCache.createGroup(tenant, group)
    await a.app.policyCache.addPermission(tenant, group, 'documents:read')
    await b.app.policyCache.warm([tenant])
    const { carriedCatchUps, deltaCatchUps } = b.app.policyCache.stats()

    const written = await a.app.policyCache.assignUser(tenant, group, user)
    t.same(written.peers, { acked: 1, total: 1 }, 'acknowledged')
    t.equal(b.app.policyCache.checkSync(tenant, user, 'documents:read'), true, 'visible on b when the write returns')
    t.equal(b.app.policyCache.stats().carriedCatchUps, carriedCatchUps, 'nothing carried')
    t.equal(b.app.policyCache.stats().deltaCatchUps, deltaCatchUps + 1, 'read from the changelog')

    const sent = await until('the test saw the third message', () => wire.payloads[2])
    t.ok(Buffer.byteLength(sent) <= 512, `within the limit (${Buffer.byteLength(sent)} bytes)`)
    const lines = sent.split('\n')
    t.equal(lines[0], ENVELOPE_VERSION)
    t.match(lines[3], /^v1,/, 'signed')
    t.same(JSON.parse(lines.slice(4).join('\n')).changes, [{ tenant, revision: 3 }], 'tenant and revision only')
    t.equal((await b.transport()).hints, 0, 'verified: a notice, not a hint')
  })
}
