/**
 * The seed's `test_webhook_system` scenario against three spawned processes of the example server:
 * a write acknowledged by both peers is answered by them on the very next request (no sleep, no
 * polling). On the shared SQLite file, and on PostgreSQL / MySQL when those servers answer.
 */
import { rmSync } from 'node:fs'
import { test, type Test } from 'tap'
import { startCluster, waitHealthy, type Cluster, type ClusterOptions } from '../../examples/demo.js'
import { dropPrefixed, mysqlDb, MYSQL_URL, postgresDb, POSTGRES_URL, randomPrefix, unreachable } from '../helpers/databases.js'
import { request } from '../helpers/http.js'

const checkUrl = (base: string, permission: string): string =>
  `${base}/check-access?tenant=tenant1&user=alice&permission=${permission}`

/**
 * Starts three servers; at the end of the test they are stopped, their temp directory removed, and
 * then `after` runs (e.g. dropping their tables).
 */
async function cluster (t: Test, options: ClusterOptions, after?: () => Promise<void>): Promise<Cluster> {
  const running: Cluster[] = []
  t.teardown(async () => {
    for (const c of running) {
      await c.stop()
      rmSync(c.dir, { recursive: true, force: true })
    }
    await after?.()
  })
  const started = await startCluster({
    // The original system's way: each lists the others (membership also finds them).
    staticPeers: true,
    ...options,
    // A generous ack wait for a loaded CI machine (a healthy peer answers in milliseconds; the write
    // returns as soon as both have); no anti-entropy, so only the webhooks can make the peers current.
    env: { ACK_TIMEOUT_MS: '3000', SYNC_INTERVAL_MS: '0', ...options.env }
  })
  running.push(started)
  await waitHealthy(started, 60000)
  return started
}

async function scenario (t: Test, c: Cluster): Promise<void> {
  const [s1, s2, s3] = c.instances.map((instance) => instance.url)

  // 1. Health of all three.
  const health = await Promise.all(c.instances.map((instance) => request('GET', `${instance.url}/health`)))
  health.forEach((res, i) => {
    t.equal(res.status, 200)
    t.match(res.body, { status: 'ok', serverId: `server-${i + 1}`, db: 'ok', peers: { total: 2 } }, `server-${i + 1} healthy`)
  })

  // Servers 2 and 3 cache the tenant before any write: only a notice can make them see the writes.
  for (const base of [s2, s3]) {
    t.match((await request('GET', checkUrl(base, 'documents:read'))).body, { allowed: false, revision: 0 }, 'denied before the writes')
  }

  // 2-4. Create the group, grant two permissions, assign the user — all on server 1.
  const writes: Array<[string, object]> = [
    ['create-group', { group: 'editors' }],
    ['add-permission', { group: 'editors', permission: 'documents:read' }],
    ['add-permission', { group: 'editors', permission: 'documents:write' }],
    ['assign-user', { group: 'editors', user: 'alice' }]
  ]
  let revision = 0
  for (const [route, body] of writes) {
    const res = await request('POST', `${s1}/${route}`, { tenant: 'tenant1', ...body })
    revision++
    t.equal(res.status, 200, route)
    t.same(res.body, { tenant: 'tenant1', revision, changed: true, peers: { acked: 2, total: 2 } }, `${route}: both peers acknowledged`)
    t.equal(res.revision, String(revision), `${route}: policy-revision header`)
  }

  // 5. The very next request on servers 2 and 3, at once: allowed, from the write's revision.
  const [on2, on3] = await Promise.all([s2, s3].map((base) => request('GET', checkUrl(base, 'documents:read'))))
  t.same(on2.body, { allowed: true, revision: 4 }, 'server 2 allows at once')
  t.same(on3.body, { allowed: true, revision: 4 }, 'server 3 allows at once')

  // Revoke on server 3; server 1 denies on its very next request.
  const revoke = await request('POST', `${s3}/remove-permission`, { tenant: 'tenant1', group: 'editors', permission: 'documents:read' })
  t.same(revoke.body, { tenant: 'tenant1', revision: 5, changed: true, peers: { acked: 2, total: 2 } }, 'revoke acknowledged by both peers')
  t.same((await request('GET', checkUrl(s1, 'documents:read'))).body, { allowed: false, revision: 5 }, 'server 1 denies at once')
  t.same((await request('GET', checkUrl(s2, 'documents:write'))).body, { allowed: true, revision: 5 }, 'the other grant stands')

  // /servers on server 1: both peers up, with their serverIds.
  const servers = await request('GET', `${s1}/servers`)
  t.match(servers.body.self, { serverId: 'server-1', url: s1 })
  t.equal(servers.body.peers.length, 2)
  for (const [i, url] of [[2, s2], [3, s3]] as const) {
    const peer = servers.body.peers.find((p: { url: string }) => p.url === url)
    t.match(peer, { url, serverId: `server-${i}`, state: 'up', consecutiveFailures: 0, failed: 0 }, `server-${i} listed up`)
  }
}

test('the seed scenario on three processes sharing one SQLite file', async (t) => {
  await scenario(t, await cluster(t, {}))
})

const servers = [
  { name: 'PostgreSQL', url: POSTGRES_URL, connect: postgresDb },
  { name: 'MySQL', url: MYSQL_URL, connect: mysqlDb }
]
for (const { name, url, connect } of servers) {
  test(`the seed scenario on three processes sharing one ${name} database`, async (t) => {
    const db = await connect()
    if (db === undefined) return unreachable(t, name, url)
    // A table prefix of its own, so parallel tests on the same database never collide.
    const prefix = randomPrefix()
    await scenario(t, await cluster(t, { policyDb: url, env: { POLICY_TABLE_PREFIX: prefix } }, async () => {
      await dropPrefixed(db, prefix)
      await db.destroy()
    }))
  })
}
