/**
 * The database going away and coming back (PostgreSQL and MariaDB/MySQL behind a TCP proxy that a
 * test cuts): /health answers 503, writes fail with a coded 503 and write nothing, checks of a
 * cached tenant keep answering from the cache (stale-while-unavailable); once the database is back,
 * /health is 200 and writes succeed again, without a restart.
 */
import Fastify from 'fastify'
import type { Kysely } from 'kysely'
import { test, type Test } from 'tap'
import policyCache from '../../lib/plugin.js'
import { digestOf, EMPTY_DIGEST } from '../../lib/digest.js'
import { KyselyPolicyStore } from '../../lib/store/index.js'
import { mysqlDb, MYSQL_URL, postgresDb, POSTGRES_URL, scratchPrefix, unreachable, withPort } from '../helpers/databases.js'
import { startProxy } from '../helpers/proxy.js'

const servers = [
  { name: 'PostgreSQL', url: POSTGRES_URL, connect: postgresDb },
  { name: 'MySQL', url: MYSQL_URL, connect: mysqlDb }
]

async function inject (app: Awaited<ReturnType<typeof Fastify>>, method: 'GET' | 'POST', url: string, payload?: object) {
  const res = await app.inject({ method, url, payload })
  return { status: res.statusCode, body: res.json() }
}

for (const { name, url, connect } of servers) {
  test(`${name}: losing the database and getting it back`, async (t: Test) => {
    const direct = await connect()
    if (direct === undefined) return unreachable(t, name, url)
    const tablePrefix = scratchPrefix(t, direct)

    const proxy = await startProxy(t, Number(new URL(url).port))
    const db = await connect(withPort(url, Number(new URL(proxy.url).port))) as Kysely<any>
    const app = Fastify()
    // Closed before the proxy (teardowns run last-registered first) and before the pool is destroyed.
    t.teardown(async () => {
      await app.close()
      await db.destroy()
    })
    await app.register(policyCache, { db, tablePrefix, syncIntervalMs: 0 })

    const check = (permission: string, tenant = 'acme') =>
      inject(app, 'GET', `/check-access?tenant=${tenant}&user=alice&permission=${permission}`)
    t.equal((await inject(app, 'POST', '/create-group', { tenant: 'acme', group: 'editors' })).status, 200)
    t.equal((await inject(app, 'POST', '/add-permission', { tenant: 'acme', group: 'editors', permission: 'docs:read' })).status, 200)
    t.equal((await inject(app, 'POST', '/assign-user', { tenant: 'acme', group: 'editors', user: 'alice' })).status, 200)
    t.same((await check('docs:read')).body, { allowed: true, revision: 3 }, 'cached before the loss')

    proxy.setUp(false)

    const health = await inject(app, 'GET', '/health')
    t.equal(health.status, 503, '/health answers 503')
    t.match(health.body, { status: 'unavailable', db: 'unavailable', tenantsCached: 1 })

    const failed = await inject(app, 'POST', '/add-permission', { tenant: 'acme', group: 'editors', permission: 'docs:write' })
    t.equal(failed.status, 503, 'a write fails with 503')
    t.match(failed.body, { statusCode: 503, code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' })
    const failedNew = await inject(app, 'POST', '/create-group', { tenant: 'other', group: 'g' })
    t.match(failedNew, { status: 503, body: { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' } }, 'a write to a new tenant too')

    t.same((await check('docs:read')).body, { allowed: true, revision: 3 }, 'a cached tenant answers from the cache')
    t.same((await check('docs:write')).body, { allowed: false, revision: 3 }, 'the failed write is not in the cache')
    t.match(await check('docs:read', 'uncached'), { status: 503, body: { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' } },
      'a tenant not cached cannot be loaded')

    const store = new KyselyPolicyStore({ db: direct, tablePrefix })
    const groups = [{ name: 'editors', permissions: ['docs:read'], users: ['alice'] }]
    t.strictSame(await store.revisions(['acme', 'other']), new Map([['acme', { revision: 3, digest: digestOf(groups) }], ['other', { revision: 0, digest: EMPTY_DIGEST }]]),
      'nothing was written')
    t.strictSame(await store.snapshot('acme'), { revision: 3, groups: groups.map((group) => ({ ...group, includes: [] })), digest: digestOf(groups), exists: true })

    proxy.setUp(true)

    // The database answers again; the last write failed, and none has succeeded since.
    t.match(await inject(app, 'GET', '/health'), { status: 200, body: { status: 'degraded', db: 'ok', writes: 'failing' } }, '/health is 200 again')
    t.match(await inject(app, 'POST', '/add-permission', { tenant: 'acme', group: 'editors', permission: 'docs:write' }),
      { status: 200, body: { revision: 4, changed: true } }, 'writes succeed again without a restart')
    t.match(await inject(app, 'GET', '/health'), { status: 200, body: { status: 'ok', db: 'ok', writes: 'ok' } }, 'and /health says so')
    t.same((await check('docs:write')).body, { allowed: true, revision: 4 })
    t.same((await check('docs:read', 'uncached')).body, { allowed: false, revision: 0 }, 'tenants load again')
    t.equal((await store.revisions(['acme'])).get('acme')?.revision, 4)
  })
}
