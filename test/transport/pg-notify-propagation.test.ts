/**
 * pg-notify: three in-process instances on one PostgreSQL. A write on one is visible on the others
 * through the channel alone (the sync is off), applied from the change the notice carries; the
 * write answers without acknowledgements; each instance drops its own messages; /health and
 * /servers report the transport.
 */
import t from 'tap'
import { POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { startNodes, until } from '../helpers/pg-notify.js'

const admin = await postgresDb()
if (admin === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  t.teardown(() => admin.destroy())

  t.test('a write on one instance is visible on the others, carried by the notice', async (t) => {
    const [a, b, c] = await startNodes(t, admin, randomPrefix(), 3)
    await a.app.policyCache.createGroup('t1', 'readers')
    await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
    // Cached on the receivers before the write they are to notice.
    await b.app.policyCache.warm(['t1'])
    await c.app.policyCache.warm(['t1'])
    const before = b.app.policyCache.stats().carriedCatchUps

    const written = await a.app.policyCache.assignUser('t1', 'readers', 'alice')
    t.same(written.peers, { acked: 0, total: 0 }, 'no acknowledgements on pg-notify')
    t.equal(written.revision, 3)
    for (const node of [b, c]) {
      await until(`${node.serverId} allows alice`, () => node.app.policyCache.checkSync('t1', 'alice', 'documents:read'))
      t.equal(await node.app.policyCache.revision('t1'), 3, `${node.serverId} is at the write's revision`)
    }
    t.ok(b.app.policyCache.stats().carriedCatchUps > before, 'applied from the carried change, without a changelog read')

    const writer = await a.transport()
    t.equal(writer.type, 'pg-notify')
    t.equal(writer.state, 'up')
    t.equal(writer.acknowledged, false)
    t.match(writer.channel, /notify$/)
    t.equal(writer.published, 3, 'one message per effective write')
    await until('the writer has dropped its own messages', async () => (await a.transport()).dropped >= 3)
    const receiver = await until('b counted the notices', async () => { const s = await b.transport(); return s.received >= 3 && s })
    t.equal(receiver.hints, 0, 'every notice verified')

    const health = (await b.app.inject({ url: '/health' })).json()
    t.same(health.transport, { type: 'pg-notify', state: 'up' })
    t.equal(health.status, 'ok')
    t.same((await b.app.inject({ url: '/servers' })).json().peers, [], 'no peers to wait for')
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
    const [a] = await startNodes(t, admin, randomPrefix(), 1)
    await a.app.policyCache.createGroup('t1', 'g')
    const again = await a.app.policyCache.createGroup('t1', 'g')
    t.equal(again.changed, false)
    t.equal((await a.transport()).published, 1)
  })
}
