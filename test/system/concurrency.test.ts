/**
 * Many writers on several instances, one tenant, a real database server: three in-process plugin
 * instances, each on its own pool (as separate hosts would be) and broadcasting to the others over
 * real signed webhooks, four concurrent writers each. The changelog must hold unique, gap-free
 * revisions, no write may be lost, and every instance must end at the database's revision with the
 * same policy and the same answers. On SQLite, whose connections must not share a process, the
 * same storm runs against three processes of the example server sharing one file.
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Kysely } from 'kysely'
import { test, type Test } from 'tap'
import { startCluster as startProcesses, waitHealthy } from '../../examples/demo.js'
import { digestOf, type WriteOutcome } from '../../lib/plugin.js'
import { createSqliteDb, KyselyPolicyStore } from '../../lib/store/index.js'
import { startCluster } from '../helpers/cluster.js'
import { mysqlDb, MYSQL_URL, postgresDb, POSTGRES_URL, scratchPrefix, unreachable } from '../helpers/databases.js'
import { request } from '../helpers/http.js'

const INSTANCES = 3
const WRITERS = 4
const WRITES = 15
const TENANT = 'busy'

const servers = [
  { name: 'PostgreSQL', url: POSTGRES_URL, connect: postgresDb },
  { name: 'MySQL', url: MYSQL_URL, connect: mysqlDb }
]

for (const { name, url, connect } of servers) {
  test(`${name}: ${INSTANCES} instances × ${WRITERS} writers × ${WRITES} writes on one tenant`, async (t: Test) => {
    const direct = await connect()
    if (direct === undefined) return unreachable(t, name, url)
    const tablePrefix = scratchPrefix(t, direct)

    // Generous bounds for a loaded machine: every write waits until both peers acknowledged it.
    const nodes = await startCluster(t, INSTANCES, {
      name: name.toLowerCase(),
      tablePrefix,
      openDb: async () => await connect() as Kysely<any>,
      ackTimeoutMs: 30000,
      requestTimeoutMs: 30000
    })
    const engines = nodes.map((node) => node.app.policyCache)
    await engines[0].createGroup(TENANT, 'staff')
    await engines[0].assignUser(TENANT, 'staff', 'alice')
    // Every instance caches the tenant before the storm: only notices can keep them current.
    for (const engine of engines) t.equal(await engine.check(TENANT, 'alice', 'none'), false)

    // Writer (i, w) adds permissions p-i-w-k, and every third write assigns a user u-i-w-k instead.
    const permissions: string[] = []
    const users: string[] = []
    const outcomes: WriteOutcome[] = []
    await Promise.all(engines.flatMap((engine, i) => Array.from({ length: WRITERS }, async (_, w) => {
      for (let k = 0; k < WRITES; k++) {
        const id = `${i}-${w}-${k}`
        if (k % 3 === 2) {
          users.push(`u-${id}`)
          outcomes.push(await engine.assignUser(TENANT, 'staff', `u-${id}`))
        } else {
          permissions.push(`p-${id}`)
          outcomes.push(await engine.addPermission(TENANT, 'staff', `p-${id}`))
        }
      }
    })))

    const total = INSTANCES * WRITERS * WRITES
    const final = total + 2
    t.equal(outcomes.length, total)
    t.ok(outcomes.every((outcome) => outcome.changed), 'every write changed something')
    t.strictSame(outcomes.map((outcome) => outcome.revision).sort((a, b) => a - b),
      Array.from({ length: total }, (_, i) => i + 3), 'the writes got revisions 3..n, each once')
    const unacked = outcomes.filter((outcome) => outcome.peers.acked !== INSTANCES - 1)
    t.equal(unacked.length, 0, 'every write was acknowledged by both peers over the webhooks')

    const store = new KyselyPolicyStore({ db: direct, tablePrefix })
    t.strictSame((await store.changesSince(TENANT, 0))?.map((change) => change.revision),
      Array.from({ length: final }, (_, i) => i + 1), 'the changelog is gap-free and unique')
    const snapshot = await store.snapshot(TENANT)
    t.equal(snapshot.revision, final)
    t.equal(snapshot.digest, digestOf(snapshot.groups), 'concurrent writers on separate pools kept the digest exact')
    t.strictSame(snapshot.groups, [{ name: 'staff', permissions: [...permissions].sort(), users: ['alice', ...users].sort(), includes: [] }],
      'no write was lost')

    for (const [i, engine] of engines.entries()) {
      t.equal(await engine.revision(TENANT), final, `instance ${i + 1} is at the database's revision`)
      t.strictSame((await engine.tenant(TENANT)).groups, snapshot.groups, `instance ${i + 1} holds the database's policy`)
      const answers = await Promise.all([...permissions, 'missing'].map((permission) => engine.check(TENANT, users[i], permission)))
      t.strictSame(answers, [...permissions.map(() => true), false], `instance ${i + 1} answers every check alike`)
    }
  })
}

/** A request that must answer 200; its JSON body. */
async function expectOk (method: 'GET' | 'POST', url: string, body?: object): Promise<any> {
  const res = await request(method, url, body, 60000)
  if (res.status !== 200) throw new Error(`${method} ${url} answered ${res.status}: ${JSON.stringify(res.body)}`)
  return res.body
}

test(`SQLite: ${INSTANCES} processes × ${WRITERS} writers × ${WRITES} writes on one tenant`, async (t) => {
  // The peer list given, as the original system did: a write must not race the membership's first poll.
  const cluster = await startProcesses({ size: INSTANCES, staticPeers: true, env: { ACK_TIMEOUT_MS: '30000', SYNC_INTERVAL_MS: '0' } })
  t.teardown(async () => {
    await cluster.stop()
    rmSync(cluster.dir, { recursive: true, force: true })
  })
  await waitHealthy(cluster, 60000)
  const urls = cluster.instances.map((instance) => instance.url)
  const check = (base: string, user: string, permission: string) =>
    expectOk('GET', `${base}/check-access?tenant=${TENANT}&user=${user}&permission=${permission}`)
  await expectOk('POST', `${urls[0]}/create-group`, { tenant: TENANT, group: 'staff' })
  await expectOk('POST', `${urls[0]}/assign-user`, { tenant: TENANT, group: 'staff', user: 'alice' })
  for (const base of urls) t.match(await check(base, 'alice', 'none'), { allowed: false, revision: 2 })

  const permissions: string[] = []
  const users: string[] = []
  const outcomes: WriteOutcome[] = []
  await Promise.all(urls.flatMap((base, i) => Array.from({ length: WRITERS }, async (_, w) => {
    for (let k = 0; k < WRITES; k++) {
      const id = `${i}-${w}-${k}`
      if (k % 3 === 2) {
        users.push(`u-${id}`)
        outcomes.push(await expectOk('POST', `${base}/assign-user`, { tenant: TENANT, group: 'staff', user: `u-${id}` }))
      } else {
        permissions.push(`p-${id}`)
        outcomes.push(await expectOk('POST', `${base}/add-permission`, { tenant: TENANT, group: 'staff', permission: `p-${id}` }))
      }
    }
  })))

  const total = INSTANCES * WRITERS * WRITES
  const final = total + 2
  t.ok(outcomes.every((outcome) => outcome.changed), 'every write changed something')
  t.strictSame(outcomes.map((outcome) => outcome.revision).sort((a, b) => a - b),
    Array.from({ length: total }, (_, i) => i + 3), 'the writes got revisions 3..n, each once')
  t.equal(outcomes.filter((outcome) => outcome.peers.acked !== INSTANCES - 1).length, 0,
    'every write was acknowledged by both peers over the webhooks')

  const store = new KyselyPolicyStore({ db: createSqliteDb(join(cluster.dir, 'policy.db')), ownsDb: true })
  t.teardown(() => store.close())
  t.strictSame((await store.changesSince(TENANT, 0))?.map((change) => change.revision),
    Array.from({ length: final }, (_, i) => i + 1), 'the changelog is gap-free and unique')
  const { digest, exists, ...snapshot } = await store.snapshot(TENANT)
  t.equal(digest, digestOf(snapshot.groups), 'four concurrent writers per process kept the digest exact')
  t.equal(exists, true, 'the tenant exists')
  t.strictSame(snapshot, { revision: final, groups: [{ name: 'staff', permissions: [...permissions].sort(), users: ['alice', ...users].sort(), includes: [] }] },
    'no write was lost')

  for (const [i, base] of urls.entries()) {
    t.strictSame(await expectOk('GET', `${base}/tenants/${TENANT}`), { tenant: TENANT, ...snapshot },
      `instance ${i + 1} is at the database's revision and holds its policy`)
    const answers = await Promise.all([...permissions, 'missing'].map(async (permission) => (await check(base, users[i], permission)).allowed))
    t.strictSame(answers, [...permissions.map(() => true), false], `instance ${i + 1} answers every check alike`)
  }
})
