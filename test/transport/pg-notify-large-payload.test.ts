/**
 * pg-notify: a notice whose envelope is over `maxPayloadBytes` (7900 by default, under PostgreSQL's
 * 8000-byte limit) goes out with tenant + revision only, still signed; the receiver reads the
 * changelog instead of applying a carried change. Here the limit is lowered to 512 bytes and the
 * write uses 128-character ids, so that one entry does not fit whole.
 */
import t from 'tap'
import { ENVELOPE_VERSION } from '../../lib/broadcast/envelope.js'
import { POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { listen, startNodes, until } from '../helpers/pg-notify.js'

const admin = await postgresDb()
if (admin === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  t.teardown(() => admin.destroy())

  t.test('an envelope over the limit carries tenant + revision; the receiver reads the changelog', async (t) => {
    const [a, b] = await startNodes(t, admin, randomPrefix(), 2, { maxPayloadBytes: 512 })
    const wire = await listen(t, (await a.transport()).channel as string)
    const tenant = 'T'.repeat(128)
    const group = 'G'.repeat(128)
    const user = 'U'.repeat(128)
    await a.app.policyCache.createGroup(tenant, group)
    await a.app.policyCache.addPermission(tenant, group, 'documents:read')
    await until('b is at revision 2', async () => { await b.app.policyCache.warm([tenant]); return await b.app.policyCache.revision(tenant) === 2 })
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
