/**
 * The example server started with POLICY_DB=postgres://… and mysql://… (a real process), its
 * database behind a TCP proxy that the test cuts while requests are in flight: the process stays
 * up, /health answers 503 and writes a coded 503, cached checks keep answering; once the proxy is
 * back, the same process is healthy and writes again.
 */
import { rmSync } from 'node:fs'
import { test, type Test } from 'tap'
import { startCluster, waitHealthy } from '../../examples/demo.js'
import { dropPrefixed, mysqlDb, MYSQL_URL, postgresDb, POSTGRES_URL, randomPrefix, unreachable, withPort } from '../helpers/databases.js'
import { request } from '../helpers/http.js'
import { startProxy } from '../helpers/proxy.js'

const servers = [
  { name: 'PostgreSQL', url: POSTGRES_URL, connect: postgresDb },
  { name: 'MySQL', url: MYSQL_URL, connect: mysqlDb }
]

for (const { name, url, connect } of servers) {
  test(`the example server on ${name} survives losing the database`, async (t: Test) => {
    const direct = await connect()
    if (direct === undefined) return unreachable(t, name, url)
    const prefix = randomPrefix()
    const proxy = await startProxy(t, Number(new URL(url).port))
    const cluster = await startCluster({
      size: 1,
      policyDb: withPort(url, Number(new URL(proxy.url).port)),
      env: { POLICY_TABLE_PREFIX: prefix, SYNC_INTERVAL_MS: '0' }
    })
    t.teardown(async () => {
      await cluster.stop()
      rmSync(cluster.dir, { recursive: true, force: true })
      await dropPrefixed(direct, prefix)
      await direct.destroy()
    })
    await waitHealthy(cluster, 60000)
    const [server] = cluster.instances
    const base = server.url
    const check = (tenant: string) => request('GET', `${base}/check-access?tenant=${tenant}&user=alice&permission=docs:read`)

    t.equal((await request('POST', `${base}/create-group`, { tenant: 'acme', group: 'g' })).status, 200)
    t.equal((await request('POST', `${base}/add-permission`, { tenant: 'acme', group: 'g', permission: 'docs:read' })).status, 200)
    t.equal((await request('POST', `${base}/assign-user`, { tenant: 'acme', group: 'g', user: 'alice' })).status, 200)
    t.same((await check('acme')).body, { allowed: true, revision: 3 }, 'cached before the loss')

    // Cut while the pool's connections are busy: writes and loads of new tenants in flight.
    const sent = proxy.nextData()
    const inFlight = Array.from({ length: 12 }, (_, i) => i % 2 === 0
      ? request('POST', `${base}/create-group`, { tenant: `busy${i}`, group: 'g' })
      : check(`cold${i}`))
    await sent
    proxy.setUp(false)
    const settled = await Promise.all(inFlight)
    t.ok(settled.every((res) => res.status === 200 || (res.status === 503 && res.body.code === 'FST_POLICY_CACHE_STORE_UNAVAILABLE')),
      `requests in flight either completed or failed with a coded 503 (${settled.map((res) => res.status).join(' ')})`)

    t.match(await request('GET', `${base}/health`), { status: 503, body: { status: 'unavailable', db: 'unavailable' } })
    t.match(await request('POST', `${base}/add-permission`, { tenant: 'acme', group: 'g', permission: 'docs:write' }),
      { status: 503, body: { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' } })
    t.same((await check('acme')).body, { allowed: true, revision: 3 }, 'the cached tenant answers from the cache')
    t.equal(server.child.exitCode, null, 'the process is still running')

    proxy.setUp(true)
    t.match(await request('GET', `${base}/health`), { status: 200, body: { status: 'degraded', db: 'ok', writes: 'failing' } }, 'the last write failed')
    t.match(await request('POST', `${base}/add-permission`, { tenant: 'acme', group: 'g', permission: 'docs:write' }),
      { status: 200, body: { revision: 4, changed: true } }, 'the same process writes again')
    t.match(await request('GET', `${base}/health`), { status: 200, body: { status: 'ok', db: 'ok', writes: 'ok' } })
    t.equal(server.child.exitCode, null)
  })
}
