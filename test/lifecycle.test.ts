import Fastify from 'fastify'
import { Kysely } from 'kysely'
import { test } from 'tap'
import policyCache from '../lib/plugin.js'
import { createSqliteDb } from '../lib/store/index.js'
import { SECRET, tempDir } from './helpers/app.js'
import { join } from 'node:path'

function handles (): string[] {
  return process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap' && r !== 'PipeWrap' && r !== 'FSReqCallback')
}

test('app.close() leaves no timers or sockets behind; a host-owned Kysely still works', async (t) => {
  const db: Kysely<any> = createSqliteDb(join(tempDir(t), 'host.db'))
  t.teardown(() => db.destroy())
  const before = handles()
  const app = Fastify()
  await app.register(policyCache, {
    db,
    syncIntervalMs: 50,
    peers: ['http://127.0.0.1:9'],
    webhookSecret: SECRET,
    ackTimeoutMs: 100,
    retry: { retries: 3, minDelayMs: 10, maxDelayMs: 20 }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  await app.policyCache.createGroup('t1', 'g') // starts a delivery to a dead peer: retries are pending
  await app.policyCache.check('t1', 'u', 'p:q') // caches a tenant: the sync timer has work
  await app.close()
  // Sockets aborted by close() release their handles within a few ticks; wait (bounded) for that.
  const settled = async () => {
    for (let i = 0; i < 100 && handles().length > before.length; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    return handles().sort()
  }
  t.same(await settled(), before.sort(), 'no timers or sockets left')
  const row = await db.selectFrom('policy_tenants').select('revision').where('tenant', '=', 't1').executeTakeFirst()
  t.equal(Number(row?.revision), 1, 'the host\'s Kysely is not destroyed')
})

test('the built-in SQLite store is closed with the app', async (t) => {
  const app = Fastify()
  await app.register(policyCache, { sqliteFile: join(tempDir(t), 'own.db'), syncIntervalMs: 0 })
  await app.policyCache.createGroup('t1', 'g')
  await app.close()
  await t.rejects(app.policyCache.refresh('t1'), { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' })
})

test('a failed registration leaves the host\'s metrics registry as it found it', async (t) => {
  const { Registry } = await import('prom-client')
  const registry = new Registry()
  const dir = tempDir(t)
  const { writeFileSync } = await import('node:fs')
  writeFileSync(join(dir, 'file'), '')
  const failing = Fastify()
  t.teardown(() => failing.close())
  // A path under a regular file cannot be opened: the store fails after the metrics were created.
  await t.rejects(async () => { await failing.register(policyCache, { sqliteFile: join(dir, 'file', 'policy.db'), metrics: { registry } }).ready() },
    { code: 'FST_POLICY_CACHE_INVALID_OPTION' })
  t.equal((await registry.getMetricsAsJSON()).length, 0, 'no metric left registered')

  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, { syncIntervalMs: 0, metrics: { registry } })
  await app.ready()
  t.match(await registry.metrics(), /policy_cache_checks_total/, 'a second instance registers on the same registry')
})
