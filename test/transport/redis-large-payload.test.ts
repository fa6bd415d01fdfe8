/**
 * redis: a notice whose envelope is over `maxPayloadBytes` goes out with tenant + revision only,
 * still signed; the receiver reads the changelog instead of applying a carried change.
 */
import t from 'tap'
import { ENVELOPE_VERSION } from '../../lib/broadcast/envelope.js'
import { unreachable } from '../helpers/databases.js'
import { randomName, reachable, REDIS_URL, startBrokerNodes, until } from '../helpers/brokers.js'
import { recordChannel } from '../helpers/redis-client.js'

if (!await reachable(REDIS_URL)) {
  unreachable(t, 'Redis', REDIS_URL)
} else {
  t.test('an envelope over the limit carries tenant + revision; the receiver reads the changelog', async (t) => {
    const channel = randomName()
    const [a, b] = await startBrokerNodes(t, 2, { type: 'redis', connection: REDIS_URL, channel, maxPayloadBytes: 512 })
    const wire = await recordChannel(t, REDIS_URL, channel)
    const tenant = 'T'.repeat(128)
    const group = 'G'.repeat(128)
    const user = 'U'.repeat(128)
    await a.app.policyCache.createGroup(tenant, group)
    await a.app.policyCache.addPermission(tenant, group, 'documents:read')
    await until('b is at revision 2', async () => { await b.app.policyCache.warm([tenant]); return await b.app.policyCache.revision(tenant) === 2 })
    await until('b handled both notices', async () => (await b.transport()).received === 2)
    const { carriedCatchUps, deltaCatchUps } = b.app.policyCache.stats()

    await a.app.policyCache.assignUser(tenant, group, user)
    await until('b allows the user', () => b.app.policyCache.checkSync(tenant, user, 'documents:read'))
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
