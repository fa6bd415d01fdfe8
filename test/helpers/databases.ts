/**
 * Connections to the test database servers, shared by every test that needs a real database.
 * Override the servers with TEST_POSTGRES_URL / TEST_MYSQL_URL.
 */
import { dialectOf } from '../../lib/store/dialect.js'
import { randomBytes } from 'node:crypto'
import { Kysely, MysqlDialect, PostgresDialect, sql } from 'kysely'
import { createPool } from 'mysql2'
import pg from 'pg'
import type { Test } from 'tap'

export const POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const MYSQL_URL = process.env.TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test'

/**
 * A pooled Kysely on the test PostgreSQL (or `url`), or undefined when it does not answer. The caller
 * destroys it. Set up as docs/databases.md advises: bounded connect wait, idle-client errors handled.
 */
export async function postgresDb (url = POSTGRES_URL): Promise<Kysely<any> | undefined> {
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 3000 })
  // A connection lost while idle in the pool, or while checked out by kysely: the query in flight
  // (if any) fails with the error, the pool discards the client; no 'error' event goes unhandled.
  pool.on('error', () => {})
  pool.on('connect', (client) => client.on('error', () => {}))
  return await reachable(new Kysely<any>({ dialect: new PostgresDialect({ pool }) }))
}

/** A pooled Kysely on the test MySQL/MariaDB (or `url`), or undefined when it does not answer. The caller destroys it. */
export async function mysqlDb (url = MYSQL_URL): Promise<Kysely<any> | undefined> {
  const pool = createPool({ uri: url, connectionLimit: 10, connectTimeout: 3000 })
  return await reachable(new Kysely<any>({ dialect: new MysqlDialect({ pool }) }))
}

/** `url` with its port replaced, e.g. to go through a test proxy. */
export function withPort (url: string, port: number): string {
  const changed = new URL(url)
  changed.port = String(port)
  return changed.href
}

async function reachable (db: Kysely<any>): Promise<Kysely<any> | undefined> {
  try {
    await sql`select 1`.execute(db)
    return db
  } catch {
    await db.destroy()
    return undefined
  }
}

/** A fresh table prefix, so that concurrent runs and tests never share tables. */
export function randomPrefix (): string {
  return `pc_${randomBytes(4).toString('hex')}_`
}

/** Drops every table whose name starts with `prefix`. */
export async function dropPrefixed (db: Kysely<any>, prefix: string): Promise<void> {
  // Not Kysely's introspection: on PostgreSQL it fails (42P01) when another test drops a table while
  // it runs (see seeingOnly in lib/store/dialect.ts), and on MariaDB it reads the columns of every
  // table of the database — with the hundreds a stopped test process can leave behind (a mutation
  // run stops many), seconds per call. The catalogs are asked for this prefix's tables only.
  const tables = dialectOf(db) === 'postgres'
    ? (await sql<{ name: string }>`select tablename as name from pg_catalog.pg_tables where schemaname = current_schema()`.execute(db)).rows
    : (await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = database()`.execute(db)).rows
  for (const { name } of tables) {
    if (name.startsWith(prefix)) await db.schema.dropTable(name).ifExists().execute()
  }
}

/** How to bring up each test database server, for the message of a test that cannot reach it. */
const HOW_TO_START: Record<string, string | undefined> = {
  PostgreSQL: 'start it (`pg_ctlcluster <version> main start`, as .ci/run does) or point TEST_POSTGRES_URL at one',
  MySQL: 'start MariaDB (`mariadbd`, as .ci/run does) or point TEST_MYSQL_URL at one',
  NATS: 'start nats-server (as .ci/run does) or point TEST_NATS_URL at one',
  Redis: 'start redis-server (as .ci/run does) or point TEST_REDIS_URL at one'
}

/**
 * Reports a database server that does not answer: a failure when `CI=true`, else a skip whose
 * message names the server, where it was looked for and how to start it.
 */
export function unreachable (t: Test, what: string, url: string): void {
  const message = `${what} not reachable at ${new URL(url).host}: SKIPPED. To run these tests, ${HOW_TO_START[what] ?? 'start it'}`
  if (process.env.CI === 'true') t.fail(`${what} not reachable at ${new URL(url).host}, and CI=true requires it`)
  else t.skip(message, () => {})
}

/**
 * A fresh table prefix on `db` for this test: at its end the prefix's tables are dropped and `db`
 * is destroyed.
 */
export function scratchPrefix (t: Test, db: Kysely<any>): string {
  const prefix = randomPrefix()
  t.teardown(async () => {
    await dropPrefixed(db, prefix)
    await db.destroy()
  })
  return prefix
}
