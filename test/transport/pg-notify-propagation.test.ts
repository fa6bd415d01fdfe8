/**
 * pg-notify: three in-process instances on one PostgreSQL. A write on one is visible on the others
 * through the channel alone (the sync is off), applied from the change the notice carries; the
 * write answers without acknowledgements; each instance drops its own messages; /health and
 * /servers report the transport (test/helpers/transport-scenarios.ts). A batch is one message.
 */
import t from 'tap'
import { POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { startNodes, until } from '../helpers/pg-notify.js'
import { propagation, unchangedSendsNothing } from '../helpers/transport-scenarios.js'

const admin = await postgresDb()
if (admin === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  t.teardown(() => admin.destroy())

  t.test('a write on one instance is visible on the others, carried by the notice', async (t) => {
    const writer = await propagation(t, { type: 'pg-notify', acknowledged: false }, await startNodes(t, admin, randomPrefix(), 3))
    t.match(writer.channel, /notify$/)
  })

  t.test('a batch is one message: carried when small, a hint when over the payload limit; peers apply it whole', async (t) => {
    const [a, b] = await startNodes(t, admin, randomPrefix(), 2)
    await b.app.policyCache.warm(['t1'])
    const small = await a.app.policyCache.batch('t1', [
      { op: 'create-group', group: 'readers' },
      { op: 'add-permission', group: 'readers', permission: 'documents:read' },
      { op: 'assign-user', group: 'readers', user: 'alice' }
    ])
    t.equal(small.revision, 1)
    await until('b allows alice', () => b.app.policyCache.checkSync('t1', 'alice', 'documents:read'))
    t.equal((await a.transport()).published, 1, 'one message for the batch')
    t.equal(b.app.policyCache.stats().carriedCatchUps, 1, 'applied from the carried batch')

    // 300 users with 40-character ids: the batch entry is far over 7 900 bytes.
    const users = Array.from({ length: 300 }, (_, i) => `user-${String(i).padStart(35, '0')}`)
    const large = await a.app.policyCache.batch('t1', users.map((user) => ({ op: 'assign-user' as const, group: 'readers', user })))
    t.equal(large.revision, 2)
    await until('b allows the last user', () => b.app.policyCache.checkSync('t1', users[299], 'documents:read'))
    t.equal(await b.app.policyCache.revision('t1'), 2)
    t.same((await b.app.policyCache.tenant('t1')).groups, (await a.app.policyCache.tenant('t1')).groups, 'b holds the whole batch')
    t.equal(b.app.policyCache.stats().carriedCatchUps, 1, 'the large one was read from the changelog, not carried')
  })

  t.test('an unchanged write sends nothing', async (t) => {
    await unchangedSendsNothing(t, (await startNodes(t, admin, randomPrefix(), 1))[0])
  })
}
