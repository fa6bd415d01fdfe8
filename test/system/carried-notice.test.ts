/**
 * A notice carries the committed change: the receiving engine applies it without reading the
 * database when exactly one revision behind, and catches up from the changelog in every other case.
 * Two engines share one store (one database); A's notifier hands its notices to the test, which
 * decodes them as the receiver does.
 */
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { NoticeChange } from '../../lib/broadcast/notice.js'
import { newMessageId, parseSecret, sign } from '../../lib/broadcast/signature.js'
import { digestOf } from '../../lib/digest.js'
import { buildApp, SECRET } from '../helpers/app.js'
import { twoEngines } from '../helpers/engines.js'

test('a write\'s notice carries its change; a peer one revision behind applies it with no database read', async (t) => {
  const { a, b, sent, reads, deliver } = twoEngines()
  await a.createGroup('t1', 'readers')
  await a.addPermission('t1', 'readers', 'doc:*')
  t.same(await b.decide('t1', 'alice', 'doc:read'), { allowed: false, revision: 2 })
  reads()

  const { revision } = await a.assignUser('t1', 'readers', 'alice')
  const notice = sent.at(-1) as NoticeChange[]
  const digest = digestOf((await a.tenant('t1')).groups)
  reads()
  t.same(notice, [{ tenant: 't1', revision, digest, operation: 'assign-user', group: 'readers', user: 'alice' }], 'with the digest of the tenant after the change')
  t.same(await deliver(notice), { t1: 3 })
  t.same(reads(), { snapshot: 0, changesSince: 0 }, 'no changelog query, no snapshot')
  t.same(await b.decide('t1', 'alice', 'doc:read'), { allowed: true, revision: 3 })
  t.equal(b.checkSync('t1', 'alice', 'doc:read'), true)
  t.match(b.stats(), { carriedCatchUps: 1, deltaCatchUps: 0, fullReloads: 0 })

  for (const [write, expected] of [
    [() => a.removePermission('t1', 'readers', 'doc:*'), false],
    [() => a.addPermission('t1', 'readers', 'doc:read'), true],
    [() => a.unassignUser('t1', 'readers', 'alice'), false],
    [() => a.assignUser('t1', 'readers', 'alice'), true],
    [() => a.deleteGroup('t1', 'readers'), false]
  ] as const) {
    const { revision } = await write()
    t.same(await deliver(sent.at(-1) as NoticeChange[]), { t1: revision })
    t.same(await b.decide('t1', 'alice', 'doc:read'), { allowed: expected, revision })
  }
  t.same(reads(), { snapshot: 0, changesSince: 0 }, 'every operation applied from its notice')
  t.same(await b.tenant('t1'), await a.tenant('t1'), 'the same policy as the writer')
})

test('a gap, an uncached tenant and an older sender\'s notice take the old paths and end correct', async (t) => {
  const { a, b, sent, reads, deliver } = twoEngines()
  await a.createGroup('t1', 'readers')
  await a.addPermission('t1', 'readers', 'doc:read')
  await b.revision('t1')
  reads()

  // Cached at r-2: the notice of r is lost in between, so the carried change cannot be applied.
  await a.assignUser('t1', 'readers', 'bob')
  const { revision } = await a.assignUser('t1', 'readers', 'alice')
  t.same(await deliver(sent.at(-1) as NoticeChange[]), { t1: revision })
  t.same(reads(), { snapshot: 0, changesSince: 1 }, 'the changelog filled the gap')
  t.equal(b.checkSync('t1', 'bob', 'doc:read'), true, 'the skipped revision is there too')
  t.equal(b.checkSync('t1', 'alice', 'doc:read'), true)

  await a.createGroup('t2', 'g')
  t.same(await deliver(sent.at(-1) as NoticeChange[]), { t2: null }, 'an uncached tenant stays uncached')
  t.same(reads(), { snapshot: 0, changesSince: 0 })
  t.same(b.cachedRevisions(), [['t1', 4]])

  const next = await a.unassignUser('t1', 'readers', 'alice')
  t.same(await deliver([{ tenant: 't1', revision: next.revision, operation: 'unassign-user' }]), { t1: next.revision }, 'an older sender: no data carried')
  t.same(reads(), { snapshot: 0, changesSince: 1 })
  t.equal(b.checkSync('t1', 'alice', 'doc:read'), false)
})

/** Sends a signed notice to the app's webhook receiver. */
function sendNotice (app: FastifyInstance, changes: NoticeChange[]) {
  const payload = JSON.stringify({ type: 'policy.changed', origin: 'a', changes })
  const id = newMessageId()
  const timestamp = Math.floor(Date.now() / 1000)
  const signature = sign([parseSecret(SECRET, 'webhookSecret')], id, timestamp, payload)
  return app.inject({
    method: 'POST',
    url: '/webhook/refresh',
    headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature },
    payload
  })
}

test('a notice with one malformed carried change is a coded 400 and nothing of it is applied', async (t) => {
  const app = await buildApp(t, { webhookSecret: SECRET })
  await app.policyCache.revision('t1')
  await app.policyCache.revision('t2')
  const good: NoticeChange = { tenant: 't1', revision: 1, digest: digestOf([{ name: 'readers', permissions: [], users: [] }]), operation: 'create-group', group: 'readers' }
  const bad: Array<[NoticeChange, string]> = [
    [{ tenant: 't2', revision: 1, operation: 'assign-user', group: 'readers', user: 'no spaces' }, 'FST_ERR_VALIDATION'],
    [{ tenant: 't2', revision: 1, operation: 'create-group', group: 'readers', user: 'alice' }, 'FST_POLICY_CACHE_INVALID_INPUT'],
    [{ tenant: 't2', revision: 1, operation: 'add-permission', group: 'readers' }, 'FST_POLICY_CACHE_INVALID_INPUT']
  ]
  for (const [entry, code] of bad) {
    for (const changes of [[good, entry], [entry, good]]) {
      const res = await sendNotice(app, changes)
      t.equal(res.statusCode, 400, code)
      t.equal(res.json().code, code)
    }
  }
  t.same([await app.policyCache.revision('t1'), await app.policyCache.revision('t2')], [0, 0], 'neither tenant moved')
  t.same((await sendNotice(app, [good])).json().revisions, { t1: 1 }, 'the good entry alone is applied')
})

test('two entries naming the same revision with different data carry nothing: the changelog decides', async (t) => {
  const { a, b, reads, deliver } = twoEngines()
  await a.createGroup('t1', 'readers')
  await b.revision('t1')
  const { revision } = await a.assignUser('t1', 'readers', 'alice')
  reads()
  t.same(await deliver([
    { tenant: 't1', revision, operation: 'assign-user', group: 'readers', user: 'mallory' },
    { tenant: 't1', revision, operation: 'assign-user', group: 'readers', user: 'alice' }
  ]), { t1: revision })
  t.same(reads(), { snapshot: 0, changesSince: 1 })
  t.same((await b.user('t1', 'alice')).groups, ['readers'])
  t.same((await b.user('t1', 'mallory')).groups, [])
})

test('two entries naming the same revision with different digests carry none: the changelog decides', async (t) => {
  const { a, b, sent, reads, deliver } = twoEngines()
  await a.createGroup('t1', 'readers')
  await b.revision('t1')
  await a.assignUser('t1', 'readers', 'alice')
  const [entry] = sent.at(-1) as NoticeChange[]
  reads()
  t.same(await deliver([{ ...entry, digest: 'ff'.repeat(16) }, entry]), { t1: entry.revision })
  t.same(reads(), { snapshot: 0, changesSince: 1 }, 'not applied from the notice')
  t.same((await b.user('t1', 'alice')).groups, ['readers'])
})
