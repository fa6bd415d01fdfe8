/**
 * The example server's pools bound every query: with the database blackholed (connections open,
 * no answer ever, test/helpers/proxy.ts holding them) a write fails with a coded 503 within the
 * client-side query timeout instead of hanging, and succeeds again once the database answers; a
 * statement stuck on the server (a sleep, a row lock) is cancelled there by the server-side bound.
 */
import type { LightMyRequestResponse } from 'fastify'
import { sql } from 'kysely'
import { test, type Test } from 'tap'
import { parseConfig } from '../../examples/config.js'
import { buildServer, DB_TIMEOUTS, openDatabase } from '../../examples/server.js'
import { dropPrefixed, mysqlDb, MYSQL_URL, postgresDb, POSTGRES_URL, randomPrefix, scratchPrefix, unreachable, withPort } from '../helpers/databases.js'
import { startProxy } from '../helpers/proxy.js'

/** Rejects if `promise` has not settled within three times the bound: a hang fails the test, not the run. */
async function bounded<T> (promise: Promise<T>, boundMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${3 * boundMs} ms (bound ${boundMs} ms)`)), 3 * boundMs)
  })
  try {
    return await Promise.race([promise, hung])
  } finally {
    clearTimeout(timer)
  }
}

const databases = [
  { name: 'PostgreSQL', url: POSTGRES_URL, connect: postgresDb },
  { name: 'MySQL', url: MYSQL_URL, connect: mysqlDb }
] as const

for (const { name, url, connect } of databases) {
  test(`${name}: a write against a blackholed database fails within the pool's query timeout, then heals`, async (t: Test) => {
    const direct = await connect()
    if (direct === undefined) return unreachable(t, name, url)
    const prefix = scratchPrefix(t, direct)
    const proxy = await startProxy(t, Number(new URL(url).port))
    const config = parseConfig(['0'], { POLICY_DB: withPort(url, Number(new URL(proxy.url).port)), POLICY_TABLE_PREFIX: prefix, SYNC_INTERVAL_MS: '0' })
    const app = await buildServer(config, { logger: false })
    t.teardown(async () => {
      proxy.hold(false)
      await app.close()
    })
    const write = (group: string): Promise<LightMyRequestResponse> =>
      app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 'acme', group } })
    t.equal((await write('before')).statusCode, 200, 'writes while the database answers')

    proxy.hold(true)
    // The second write meets the connection the first one timed out on, or a new one: bounded too.
    for (const group of ['during', 'still-during']) {
      const blackholed = await bounded(write(group), DB_TIMEOUTS.query)
      t.equal(blackholed.statusCode, 503, `${group}: a coded 503, not a hang`)
      t.equal(blackholed.json().code, 'FST_POLICY_CACHE_STORE_UNAVAILABLE', group)
    }

    proxy.hold(false)
    t.equal((await bounded(write('after'), DB_TIMEOUTS.query)).statusCode, 200, 'the same pool writes again once the database answers')
  })
}

test('PostgreSQL: a statement running too long is cancelled by the server (statement_timeout)', async (t) => {
  const direct = await postgresDb()
  if (direct === undefined) return unreachable(t, 'PostgreSQL', POSTGRES_URL)
  await direct.destroy()
  const db = await openDatabase({ kind: 'postgres', url: POSTGRES_URL })
  t.teardown(() => db.destroy())
  const sleep = sql`select pg_sleep(${(3 * DB_TIMEOUTS.statement) / 1000})`.execute(db)
  // 57014 query_canceled: the server's own cancel, which leaves the connection usable.
  await t.rejects(bounded(sleep, DB_TIMEOUTS.statement), { code: '57014' })
  t.same((await sql<{ ok: number }>`select 1 as ok`.execute(db)).rows, [{ ok: 1 }], 'the connection is still usable')
  t.same((await sql<{ v: string }>`select current_setting('idle_in_transaction_session_timeout') as v`.execute(db)).rows,
    [{ v: `${DB_TIMEOUTS.idleInTransaction / 1000}s` }], 'a transaction left idle by a silent client is ended by the server')
})

test('MySQL: a statement waiting for a row lock gives up at the bound (innodb_lock_wait_timeout)', async (t) => {
  const direct = await mysqlDb()
  if (direct === undefined) return unreachable(t, 'MySQL', MYSQL_URL)
  const prefix = randomPrefix()
  const table = `${prefix}locked`
  const db = await openDatabase({ kind: 'mysql', url: MYSQL_URL })
  const holder = await direct.startTransaction().execute()
  t.teardown(async () => {
    // In this order: the lock goes before the table can be dropped.
    await holder.rollback().execute().catch(() => {})
    await db.destroy()
    await dropPrefixed(direct, prefix)
    await direct.destroy()
  })
  await direct.schema.createTable(table).addColumn('id', 'integer', (col) => col.primaryKey()).execute()
  await direct.insertInto(table).values({ id: 1 }).execute()

  await holder.selectFrom(table).selectAll().where('id', '=', 1).forUpdate().execute()
  const waiting = db.selectFrom(table).selectAll().where('id', '=', 1).forUpdate().execute()
  // ER_LOCK_WAIT_TIMEOUT, from the server: the connection stays usable.
  await t.rejects(bounded(waiting, DB_TIMEOUTS.statement), { code: 'ER_LOCK_WAIT_TIMEOUT' })
  await holder.rollback().execute()
  t.same(await db.selectFrom(table).selectAll().execute(), [{ id: 1 }], 'the connection is still usable')
})
