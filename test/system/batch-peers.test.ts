/**
 * A batch reaches peers as one notice entry at its one revision: carrying its effective changes when
 * small (a peer one revision behind applies them with no database read), nothing when large (the peer
 * reads the batch's one changelog entry). Never a full reload.
 */
import { test } from 'tap'
import { MAX_CARRIED_BATCH, type NoticeChange } from '../../lib/broadcast/notice.js'
import type { Change } from '../../lib/model.js'
import { startCluster } from '../helpers/cluster.js'
import { twoEngines } from '../helpers/engines.js'

const assignments = (n: number): Change[] => Array.from({ length: n }, (_, i): Change => ({ op: 'assign-user', group: 'staff', user: `u${i}` }))

test('a small batch\'s notice carries its effective changes; a peer one revision behind applies them with no read', async (t) => {
  const { a, b, sent, reads, deliver } = twoEngines()
  await a.createGroup('t1', 'old')
  await a.assignUser('t1', 'old', 'carol')
  t.equal(await b.revision('t1'), 2)
  reads()

  const batch: Change[] = [
    { op: 'create-group', group: 'staff' },
    { op: 'add-permission', group: 'staff', permission: 'doc:*' },
    { op: 'assign-user', group: 'staff', user: 'alice' },
    { op: 'assign-user', group: 'staff', user: 'alice' },
    { op: 'delete-group', group: 'old' }
  ]
  const outcome = await a.batch('t1', batch)
  t.same(outcome.effects, [true, true, true, false, true])
  t.equal(outcome.revision, 3)
  t.equal(sent.length, 3, 'one notice for the batch')
  const notice = sent.at(-1) as NoticeChange[]
  t.equal(notice.length, 1, 'with one entry')
  t.same(notice[0].batch, [
    { operation: 'create-group', group: 'staff' },
    { operation: 'add-permission', group: 'staff', permission: 'doc:*' },
    { operation: 'assign-user', group: 'staff', user: 'alice' },
    { operation: 'delete-group', group: 'old' }
  ], 'the effective changes, in order')
  t.notOk('operation' in notice[0], 'no operation beside it: an older receiver\'s schema accepts the entry and reads the changelog')
  reads()
  t.same(await deliver(notice), { t1: 3 })
  t.same(reads(), { snapshot: 0, changesSince: 0 }, 'no database read')
  t.match(b.stats(), { carriedCatchUps: 1, deltaCatchUps: 0, fullReloads: 0 })
  t.same(await b.tenant('t1'), await a.tenant('t1'), 'the writer\'s policy')
  t.equal(b.checkSync('t1', 'carol', 'doc:read'), false)
  t.equal(b.checkSync('t1', 'alice', 'doc:read'), true)
})

test('a large batch\'s notice carries nothing: the peer reads the one changelog entry, no reload', async (t) => {
  const { a, b, sent, reads, deliver } = twoEngines()
  await a.createGroup('t1', 'staff')
  await b.revision('t1')
  reads()
  const { revision } = await a.batch('t1', assignments(MAX_CARRIED_BATCH + 1))
  t.equal(revision, 2)
  const notice = sent.at(-1) as NoticeChange[]
  t.same(notice, [{ tenant: 't1', revision: 2, digest: notice[0].digest }], 'tenant, revision and digest only')
  t.same(await deliver(notice), { t1: 2 })
  t.same(reads(), { snapshot: 0, changesSince: 1 }, 'one changelog read')
  t.match(b.stats(), { carriedCatchUps: 0, deltaCatchUps: 1, fullReloads: 0 })
  t.same(await b.tenant('t1'), await a.tenant('t1'))
})

test('a carried batch that does not give the sender\'s digest is not applied: the changelog decides', async (t) => {
  const { a, b, sent, reads, deliver } = twoEngines()
  await a.createGroup('t1', 'staff')
  await b.revision('t1')
  await a.batch('t1', assignments(3))
  const notice = sent.at(-1) as NoticeChange[]
  const forged = [{ ...notice[0], batch: [{ operation: 'assign-user' as const, group: 'staff', user: 'mallory' }, ...notice[0].batch!.slice(1)] }]
  reads()
  t.same(await deliver(forged), { t1: 2 })
  t.same(reads(), { snapshot: 0, changesSince: 1 })
  t.match(b.stats(), { carriedCatchUps: 0, deltaCatchUps: 1 })
  t.same((await b.tenant('t1')).groups[0].users, ['u0', 'u1', 'u2'], 'what the database holds, not the forged batch')
})

test('two instances over HTTP: the peer applies a batch at once from its notice, acknowledged, no reload', async (t) => {
  const [one, two] = await startCluster(t, 2, { name: 'batch' })
  await one.app.policyCache.createGroup('t1', 'staff')
  await two.app.policyCache.warm(['t1'])
  const before = two.app.policyCache.stats()

  const res = await one.app.inject({
    method: 'POST',
    url: '/batch',
    payload: { tenant: 't1', changes: [{ operation: 'add-permission', group: 'staff', permission: 'doc:read' }, ...['alice', 'bob'].map((user) => ({ operation: 'assign-user', group: 'staff', user }))] }
  })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { tenant: 't1', revision: 2, changed: true, effects: [true, true, true], peers: { acked: 1, total: 1 } })
  t.equal(two.app.policyCache.checkSync('t1', 'bob', 'doc:read'), true, 'acknowledged: the peer answers from the batch at once')
  const after = two.app.policyCache.stats()
  t.equal(after.carriedCatchUps - before.carriedCatchUps, 1, 'a carried catch-up')
  t.equal(after.fullReloads - before.fullReloads, 0, 'not a reload')
  t.equal(after.deltaCatchUps - before.deltaCatchUps, 0, 'nor a changelog read')
})
