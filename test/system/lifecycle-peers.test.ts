/**
 * A tenant's deletion and an import reach the peers like a batch: one notice entry at one revision,
 * carrying the changes when small (a peer one revision behind applies them with no database read),
 * nothing when large (the peer reads the one changelog entry) — never a full reload. Every instance
 * drops a deleted tenant's contents at once (acknowledged over webhooks), and over every transport;
 * a tenant created again goes on from the deletion's revision, so no peer mistakes it for its past.
 */
import type { FastifyInstance } from 'fastify'
import { test, type Test } from 'tap'
import { MAX_CARRIED_BATCH, type NoticeChange } from '../../lib/broadcast/notice.js'
import type { GroupData } from '../../lib/model.js'
import type { TransportOption } from '../../lib/plugin.js'
import { NATS_URL, randomName, reachable, REDIS_URL, startBrokerNodes, until } from '../helpers/brokers.js'
import { startCluster } from '../helpers/cluster.js'
import { POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { twoEngines } from '../helpers/engines.js'
import { startNodes } from '../helpers/pg-notify.js'

const POLICY: GroupData[] = [
  { name: 'admins', permissions: ['*'], users: ['carol'], includes: [] },
  { name: 'editors', permissions: ['docs:*'], users: ['alice', 'bob'], includes: [] }
]
const document = (groups: GroupData[]) => ({ groups, format: 1 as const })

test('a deletion\'s notice carries its delete-groups: the peer drops the tenant\'s contents with no read', async (t) => {
  const { a, b, sent, reads, deliver } = twoEngines()
  await a.importTenant('t1', document(POLICY))
  t.equal(b.checkSync('t1', 'alice', 'docs:read'), undefined)
  await b.warm(['t1'])
  t.equal(b.checkSync('t1', 'alice', 'docs:read'), true)

  const deleted = await a.deleteTenant('t1')
  reads()
  t.equal(deleted.revision, 2)
  t.equal(sent.length, 2, 'one notice for the import, one for the deletion')
  const [entry] = sent[1]
  t.same(entry.batch, [{ operation: 'delete-group', group: 'admins' }, { operation: 'delete-group', group: 'editors' }])
  t.same(await deliver(sent.at(-1) as NoticeChange[]), { t1: 2 })
  t.same(reads(), { snapshot: 0, changesSince: 0 }, 'no database read')
  t.match(b.stats(), { carriedCatchUps: 1, fullReloads: 0 })
  t.equal(b.checkSync('t1', 'alice', 'docs:read'), false, 'dropped at once')
  t.same(await b.tenant('t1'), { tenant: 't1', revision: 2, groups: [] })

  // Created again on the peer: the revision goes on, and the first instance catches up from 2.
  t.match(await b.createGroup('t1', 'admins'), { revision: 3 })
  t.match(await a.tenant('t1', { minRevision: 3 }), { revision: 3, groups: [{ name: 'admins', permissions: [], users: [] }] })
})

test('an import\'s notice carries the difference; a large one carries nothing and the peer reads one entry', async (t) => {
  const { a, b, sent, reads, deliver } = twoEngines()
  await a.importTenant('t1', document(POLICY))
  await b.warm(['t1'])

  const next: GroupData[] = [{ name: 'editors', permissions: ['docs:read'], users: ['bob', 'dave'], includes: [] }]
  await a.importTenant('t1', document(next))
  reads()
  t.same(sent.at(-1)?.[0].batch, [
    { operation: 'delete-group', group: 'admins' },
    { operation: 'remove-permission', group: 'editors', permission: 'docs:*' },
    { operation: 'add-permission', group: 'editors', permission: 'docs:read' },
    { operation: 'unassign-user', group: 'editors', user: 'alice' },
    { operation: 'assign-user', group: 'editors', user: 'dave' }
  ], 'the difference, not the document')
  t.same(await deliver(sent.at(-1) as NoticeChange[]), { t1: 2 })
  t.same(reads(), { snapshot: 0, changesSince: 0 })
  t.same((await b.tenant('t1')).groups, next)

  const users = Array.from({ length: MAX_CARRIED_BATCH + 1 }, (_, i) => `u${String(i).padStart(3, '0')}`)
  const large: GroupData[] = [{ name: 'editors', permissions: ['docs:read'], users, includes: [] }]
  await a.importTenant('t1', document(large))
  reads()
  const notice = sent.at(-1) as NoticeChange[]
  t.same(notice, [{ tenant: 't1', revision: 3, digest: notice[0].digest }], 'tenant, revision and digest only')
  t.same(await deliver(sent.at(-1) as NoticeChange[]), { t1: 3 })
  t.same(reads(), { snapshot: 0, changesSince: 1 }, 'one changelog read')
  t.match(b.stats(), { carriedCatchUps: 1, deltaCatchUps: 1, fullReloads: 0 })
  t.same((await b.tenant('t1')).groups, large)
})

test('three instances over webhooks: a deletion and an import are acknowledged, every peer answers them at once', async (t) => {
  // A write waits only until every peer has acknowledged: a long ackTimeoutMs costs nothing here, and
  // keeps a loaded machine from turning a slow acknowledgement into a missing one.
  const nodes = await startCluster(t, 3, { name: 'lifecycle', ackTimeoutMs: 60000 })
  const [one, two, three] = nodes.map((node) => node.app)
  await one.policyCache.importTenant('t1', document(POLICY))
  for (const app of [one, two, three]) await app.policyCache.warm(['t1'])

  const res = await one.inject({ method: 'DELETE', url: '/tenants/t1' })
  t.same(res.json(), { tenant: 't1', deleted: true, revision: 2, peers: { acked: 2, total: 2 } })
  for (const app of [two, three]) {
    t.equal(app.policyCache.checkSync('t1', 'carol', 'anything'), false, `${app.policyCache.serverId}: dropped once acknowledged`)
    t.match(app.policyCache.stats(), { fullReloads: 0 })
  }
  t.same((await two.inject('/tenants')).json(), { tenants: [], next: null }, 'no longer listed anywhere')

  const imported = await two.inject({ method: 'PUT', url: '/tenants/t1/import', payload: document(POLICY) })
  t.same(imported.json(), { tenant: 't1', revision: 3, changed: true, peers: { acked: 2, total: 2 } }, 'created again on another instance, after the deletion\'s revision')
  for (const app of [one, three]) t.equal(app.policyCache.checkSync('t1', 'carol', 'anything'), true, `${app.policyCache.serverId}: answers the import at once`)
})

/** Deletes on `a`; `b` and `c` drop the tenant through the transport alone (the sync is off), and an import reaches them likewise. */
async function overTransport (t: Test, [a, ...others]: Array<{ app: FastifyInstance }>): Promise<void> {
  await a.app.policyCache.importTenant('t1', document(POLICY))
  for (const { app } of others) await app.policyCache.warm(['t1'])
  await a.app.policyCache.deleteTenant('t1')
  for (const { app } of others) {
    await until(`${app.policyCache.serverId} drops t1`, () => app.policyCache.checkSync('t1', 'carol', 'anything') === false)
    t.equal(await app.policyCache.revision('t1'), 2)
  }
  await a.app.policyCache.importTenant('t1', document(POLICY.slice(1)))
  for (const { app } of others) {
    await until(`${app.policyCache.serverId} applies the import`, () => app.policyCache.checkSync('t1', 'bob', 'docs:read') === true)
    t.same((await app.policyCache.tenant('t1')).groups, POLICY.slice(1))
  }
}

test('over pg-notify', async (t) => {
  const admin = await postgresDb()
  if (admin === undefined) return unreachable(t, 'PostgreSQL', POSTGRES_URL)
  t.teardown(() => admin.destroy())
  await overTransport(t, await startNodes(t, admin, randomPrefix(), 3))
})

for (const [name, url, transport] of [
  ['NATS', NATS_URL, (): TransportOption => ({ type: 'nats', servers: NATS_URL, subject: randomName() })],
  ['Redis', REDIS_URL, (): TransportOption => ({ type: 'redis', connection: REDIS_URL, channel: randomName() })]
] as const) {
  test(`over ${name}`, async (t) => {
    if (!await reachable(url)) return unreachable(t, name, url)
    await overTransport(t, await startBrokerNodes(t, 3, transport()))
  })
}
