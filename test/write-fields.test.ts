/**
 * A change passed to the decorator's `write()` carries its operation's fields and nothing else: an
 * unknown field is a coded 400 with nothing written, and a notice carries only the operation's fields
 * (an extra one made peers refuse the whole notice).
 */
import { test } from 'tap'
import { noticeChange } from '../lib/broadcast/notice.js'
import type { Change, LoggedChange } from '../lib/model.js'
import type { PolicyCache } from '../lib/policy-cache.js'
import { buildApp, recordingPeer, SECRET } from './helpers/app.js'

test('write() refuses a field its operation does not take: coded 400, nothing written, nothing sent', async (t) => {
  const peer = await recordingPeer(t)
  const app = await buildApp(t, { peers: [peer.url], webhookSecret: SECRET, ackTimeoutMs: 5000 })
  const engine = app.policyCache as unknown as PolicyCache
  const bad: Array<Record<string, unknown>> = [
    { op: 'create-group', group: 'g', user: 'alice' },
    { op: 'create-group', group: 'g', note: 'hello' },
    { op: 'add-permission', group: 'g', permission: 'doc:read', user: 'alice' },
    { op: 'assign-user', group: 'g', user: 'alice', permission: 'doc:read' },
    { op: 'delete-group', group: 'g', revision: 7 }
  ]
  for (const change of bad) {
    const err = await engine.write('t1', change as unknown as Change).then(() => null, (e: unknown) => e)
    t.match(err, { code: 'FST_POLICY_CACHE_INVALID_INPUT', statusCode: 400 }, JSON.stringify(change))
  }
  const notAnObject = await engine.write('t1', null as unknown as Change).then(() => null, (e: unknown) => e)
  t.match(notAnObject, { code: 'FST_POLICY_CACHE_INVALID_INPUT', statusCode: 400 }, 'null')
  await engine.refresh('t1')
  t.same(await engine.tenant('t1'), { tenant: 't1', revision: 0, groups: [] }, 'nothing written')

  const outcome = await engine.write('t1', { op: 'create-group', group: 'g' })
  t.match(outcome, { revision: 1, peers: { acked: 1, total: 1 } })
  const digest = peer.notices[0]?.changes[0]?.digest
  t.match(digest, /^[0-9a-f]{32}$/, 'with the tenant\'s digest after it')
  t.same(peer.notices.map((notice) => notice.changes), [[{ tenant: 't1', revision: 1, digest, operation: 'create-group', group: 'g' }]],
    'only the write that passed was sent, with its own fields')
})

test('noticeChange copies only the operation\'s fields', async (t) => {
  const widened = { op: 'assign-user', group: 'g', user: 'alice', revision: 3, permission: 'doc:read', note: 'x' } as unknown as LoggedChange
  const digest = 'ab'.repeat(16)
  t.same(noticeChange('t1', widened, digest), { tenant: 't1', revision: 3, digest, operation: 'assign-user', group: 'g', user: 'alice' })
})
