/**
 * Contents, not only revisions (issue 15): over real HTTP, a forged notice — signed with the shared
 * secret, carrying a change the database never saw — is never acknowledged as the real revision and is
 * healed by the real write or by anti-entropy; and two deployments on separate databases that share a
 * secret refuse each other's notices.
 */
import { join } from 'node:path'
import Fastify from 'fastify'
import { test } from 'tap'
import type { NoticeChange } from '../../lib/broadcast/notice.js'
import { newMessageId, parseSecret, sign } from '../../lib/broadcast/signature.js'
import { TenantState } from '../../lib/cache/tenant-state.js'
import { digestOf } from '../../lib/digest.js'
import type { Change, GroupData } from '../../lib/model.js'
import policyCache from '../../lib/plugin.js'
import { SECRET, tempDir } from '../helpers/app.js'
import { freePort, startCluster } from '../helpers/cluster.js'
import { request } from '../helpers/http.js'

const ALICE = 'tenant=t1&user=alice&permission=doc:read'
const MALLORY = 'tenant=t1&user=mallory&permission=doc:read'

/** Posts a notice signed with the shared secret, as any holder of the secret can. */
async function sendNotice (url: string, changes: NoticeChange[], extra: object = {}) {
  const payload = JSON.stringify({ type: 'policy.changed', origin: 'intruder', changes, ...extra })
  const id = newMessageId()
  const timestamp = Math.floor(Date.now() / 1000)
  const res = await fetch(`${url}/webhook/refresh`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': sign([parseSecret(SECRET, 'webhookSecret')], id, timestamp, payload)
    },
    body: payload
  })
  return { status: res.status, body: await res.json() }
}

/**
 * The notice entry a forger builds for `change` at the instance's revision + 1: with the digest the
 * instance will compute after applying it, so the carried change is applied.
 */
async function forged (url: string, change: Change & { user: string }): Promise<NoticeChange> {
  const view = (await request('GET', `${url}/tenants/t1`)).body as { revision: number, groups: GroupData[] }
  const state = new TenantState({ revision: view.revision, groups: view.groups, digest: digestOf(view.groups) })
  return { tenant: 't1', revision: view.revision + 1, digest: state.digestAfter(change), operation: change.op, group: change.group, user: change.user }
}

async function seed (url: string) {
  await request('POST', `${url}/create-group`, { tenant: 't1', group: 'readers' })
  await request('POST', `${url}/add-permission`, { tenant: 't1', group: 'readers', permission: 'doc:read' })
}

test('a forged carried change is applied but never acknowledged as the real revision: the real write repairs it', async (t) => {
  const [a, b] = await startCluster(t, 2, { ackTimeoutMs: 60000 })
  await seed(a.url)
  t.match((await request('GET', `${b.url}/check-access?${MALLORY}`)).body, { allowed: false, revision: 2 })

  const notice = await sendNotice(b.url, [await forged(b.url, { op: 'assign-user', group: 'readers', user: 'mallory' })])
  t.same(notice.body.revisions, { t1: 3 }, 'the forged change is applied: the digest is consistent with it')
  t.same((await request('GET', `${b.url}/check-access?${MALLORY}`)).body, { allowed: true, revision: 3 }, 'what a forger can do for a while')

  // The database's revision 3 is another change; b must not acknowledge it while holding the forged one.
  const written = await request('POST', `${a.url}/assign-user`, { tenant: 't1', group: 'readers', user: 'alice' })
  t.match(written.body, { revision: 3, peers: { acked: 1, total: 1 } })
  t.same((await request('GET', `${b.url}/check-access?${MALLORY}`)).body, { allowed: false, revision: 3 }, 'acknowledged only once repaired')
  t.same((await request('GET', `${b.url}/check-access?${ALICE}`)).body, { allowed: true, revision: 3 })
  t.same((await request('GET', `${b.url}/tenants/t1`)).body, (await request('GET', `${a.url}/tenants/t1`)).body, 'the database\'s contents')
})

test('anti-entropy heals a forged change within one sync interval, and refresh-tenant at once', async (t) => {
  const file = join(tempDir(t), 'shared.db')
  const [b] = await startCluster(t, 1, { file, name: 'b', syncIntervalMs: 100 })
  const [a] = await startCluster(t, 1, { file, name: 'a' })
  await seed(a.url)
  t.match((await request('GET', `${b.url}/check-access?${MALLORY}`)).body, { revision: 2 })
  const applied = await sendNotice(b.url, [await forged(b.url, { op: 'assign-user', group: 'readers', user: 'mallory' })])
  t.same(applied.body.revisions, { t1: 3 }, 'forged, ahead of the database')
  // Bounded wait for the sync loop (100 ms ± 10 %): poll b until it holds the database's contents.
  let seen = (await request('GET', `${b.url}/check-access?${MALLORY}`)).body
  for (let i = 0; i < 100 && seen.allowed === true; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    seen = (await request('GET', `${b.url}/check-access?${MALLORY}`)).body
  }
  t.same(seen, { allowed: false, revision: 2 }, 'back to what the database holds, at its revision')

  // The same forgery at the database's next revision, then a write that notifies nobody: same
  // revision, other contents. refresh-tenant installs what the database holds at once.
  const [c] = await startCluster(t, 1, { file, name: 'c', syncIntervalMs: 0 })
  t.match((await request('GET', `${c.url}/check-access?${MALLORY}`)).body, { revision: 2 })
  await sendNotice(c.url, [await forged(c.url, { op: 'assign-user', group: 'readers', user: 'mallory' })])
  await request('POST', `${a.url}/assign-user`, { tenant: 't1', group: 'readers', user: 'alice' })
  t.same((await request('GET', `${c.url}/check-access?${MALLORY}`)).body, { allowed: true, revision: 3 })
  t.same((await request('POST', `${c.url}/refresh-tenant`, { tenant: 't1' })).body, { tenant: 't1', revision: 3 })
  t.same((await request('GET', `${c.url}/check-access?${MALLORY}`)).body, { allowed: false, revision: 3 })
  t.same((await request('GET', `${c.url}/check-access?${ALICE}`)).body, { allowed: true, revision: 3 })
})

test('two deployments on separate databases sharing a secret: notices are refused (409) and logged once per sender', async (t) => {
  // y: its own database; it revokes alice.
  const lines: Array<{ level: number, msg: string, origin?: string }> = []
  const y = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  t.teardown(() => y.close())
  const yPort = await freePort()
  await y.register(policyCache, { sqliteFile: join(tempDir(t), 'y.db'), serverId: 'y-1', webhookSecret: SECRET, syncIntervalMs: 0 })
  await y.listen({ port: yPort, host: '127.0.0.1' })
  const yUrl = `http://127.0.0.1:${yPort}`
  await seed(yUrl)
  await request('POST', `${yUrl}/assign-user`, { tenant: 't1', group: 'readers', user: 'alice' })
  await request('POST', `${yUrl}/unassign-user`, { tenant: 't1', group: 'readers', user: 'alice' })
  t.same((await request('GET', `${yUrl}/check-access?${ALICE}`)).body, { allowed: false, revision: 4 })

  // x: another database with the same history, the same secret, and y (by mistake) as a peer.
  const [x] = await startCluster(t, 1, { name: 'x', extraPeers: [yUrl], ackTimeoutMs: 60000 })
  await seed(x.url)
  await request('POST', `${x.url}/assign-user`, { tenant: 't1', group: 'readers', user: 'alice' })
  await request('POST', `${x.url}/unassign-user`, { tenant: 't1', group: 'readers', user: 'alice' })
  const granted = await request('POST', `${x.url}/assign-user`, { tenant: 't1', group: 'readers', user: 'alice' })
  t.match(granted.body, { revision: 5, peers: { acked: 0, total: 1 } }, 'y never acknowledges')
  t.same((await request('GET', `${yUrl}/check-access?${ALICE}`)).body, { allowed: false, revision: 4 }, 'y keeps its own revocation')
  const [peer] = (await request('GET', `${x.url}/servers`)).body.peers
  t.match(peer, { url: yUrl, state: 'down', lastError: /409/ })

  const refusals = lines.filter((line) => /another database/.test(line.msg))
  t.equal(refusals.length, 1, 'logged once for the sender, however many notices it sent')
  t.match(refusals[0], { level: 50, origin: 'x-1' })
})

test('a notice naming another database is a coded 409, and one naming none (an older sender) is accepted', async (t) => {
  const [b] = await startCluster(t, 1, { name: 'b' })
  await seed(b.url)
  t.match((await request('GET', `${b.url}/check-access?${ALICE}`)).body, { revision: 2 })
  const entry = { tenant: 't1', revision: 2 }
  const refused = await sendNotice(b.url, [entry], { database: 'another-database' })
  t.equal(refused.status, 409)
  t.equal(refused.body.code, 'FST_POLICY_CACHE_FOREIGN_DATABASE')
  t.same((await sendNotice(b.url, [entry])).body, { serverId: 'b-1', revisions: { t1: 2 } })
})
